"""The ``Resonate`` client: register functions, run them durably, and reach their promises."""

from __future__ import annotations

import copy
import functools
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

from resonate_daemon.protocol import (
    CollectGarbage,
    CreateAndSubscribe,
    CreatePromiseAndTask,
    CreateSchedule,
    ForkWorkflow,
    GetPromise,
    GetStatus,
    RetryWorkflow,
)
from resonate_daemon.protocol.records import (
    FOREVER,
    TAG_FUNC,
    TAG_INVOKE,
    TAG_ROOT,
    TAG_SCOPE,
    Schedule,
    address_of,
)
from resonate_daemon.protocol.results import (
    Claimed,
    Collected,
    Created,
    Status,
)

from . import codec, retry
from .handle import Handle
from .options import Options
from .promises import Promises, Tasks, Workflows
from .registry import Registry
from .runtime import Runtime
from .schedules import Schedules
from .transport import Transport

if TYPE_CHECKING:
    from resonate_daemon.clock import Clock

P = ParamSpec("P")
R = TypeVar("R")


class Resonate:
    """Durable functions. Example::

        resonate = Resonate.local()          # or Resonate.local(path="app.db"), Resonate.remote(group="w")

        @resonate.register
        def factorial(ctx: Context, n: int) -> int:
            if n <= 1:
                return 1
            return n * (yield ctx.run(factorial, n - 1))

        factorial.run("factorial-5", 5)      # 120
    """

    def __init__(self, transport: Transport, *, group: str = "default", pid: str | None = None,
                 ttl: float = 10, workers: int | None = None, registry: Registry | None = None,
                 dependencies: dict[str, Any] | None = None) -> None:
        if not isinstance(group, str) or not group or "/" in group or "@" in group:
            raise ValueError(f"group must be a plain name, got {group!r}")
        self._registry = registry or Registry()
        self._dependencies: dict[str, Any] = dict(dependencies or {})
        self._opts = Options()
        self._group = group
        self._pid = pid or os.urandom(16).hex()
        self._transport = transport
        self._runtime = Runtime(transport, self._registry, self._dependencies, group, self._pid, ttl, workers)
        self._promises = Promises(transport)
        self._schedules = Schedules(transport)
        self._tasks = Tasks(transport)
        self._workflows = Workflows(transport)

    @classmethod
    def local(cls, path: str | None = None, *, group: str = "default", pid: str | None = None,
              ttl: float = 10, workers: int | None = None, durability: str = "full",
              registry: Registry | None = None, dependencies: dict[str, Any] | None = None,
              clock: Clock | None = None, read_only: bool = False) -> Resonate:
        """Everything in this process: SQLite in memory, or in the file ``path`` so a crash resumes.
        ``read_only``: look at a file another process holds (reads only; writes and ``start`` raise
        ``StoreLocked``)."""
        from .local import LocalTransport

        return cls(LocalTransport(path, durability=durability, clock=clock, read_only=read_only), group=group,
                   pid=pid, ttl=ttl,
                   workers=workers, registry=registry, dependencies=dependencies)

    @classmethod
    def remote(cls, group: str = "default", *, socket: str | None = None, url: str | None = None,
               token: str | None = None, ca_file: str | None = None, pid: str | None = None, ttl: float = 10,
               workers: int | None = None, registry: Registry | None = None,
               dependencies: dict[str, Any] | None = None, retry_for: float = 30.0) -> Resonate:
        """A worker and client of a daemon (``resonate serve``), over its Unix socket or TCP URL; with
        neither, ``RESONATE_SOCKET`` / ``RESONATE_URL`` (and ``RESONATE_TOKEN``) say where, as for the CLI,
        else the default socket. Requests that meet no daemon are retried for ``retry_for`` seconds, then
        raise ``Unreachable``; so does ``start()`` when the push stream is not up by then.

        An ``https://`` URL verifies the daemon's certificate against ``ca_file`` (or ``RESONATE_CA_FILE``,
        else the system's CAs); a certificate it does not trust raises ``TLSFailed`` at once::

            Resonate.remote(url="https://daemon.internal:8001", token=token, ca_file="ca.pem")
        """
        from .remote import RemoteTransport

        return cls(RemoteTransport(socket=socket, url=url, token=token, ca_file=ca_file, retry_for=retry_for),
                   group=group, pid=pid, ttl=ttl, workers=workers, registry=registry, dependencies=dependencies)

    # -- configuration ----------------------------------------------------------------------------
    @property
    def pid(self) -> str:
        return self._pid

    @property
    def group(self) -> str:
        return self._group

    @property
    def where(self) -> str:
        """Where the store is: a database file, a socket path or a URL."""
        return self._transport.where

    @property
    def promises(self) -> Promises:
        return self._promises

    @property
    def schedules(self) -> Schedules:
        return self._schedules

    @property
    def tasks(self) -> Tasks:
        return self._tasks

    @property
    def workflows(self) -> Workflows:
        return self._workflows

    @property
    def registry(self) -> Registry:
        return self._registry

    @property
    def dependencies(self) -> dict[str, Any]:
        return dict(self._dependencies)

    def _with_opts(self, opts: Options) -> Resonate:
        other = copy.copy(self)
        other._opts = opts
        return other

    def options(self, **opts: Any) -> Resonate:
        """This client with other options for the next calls: ``resonate.options(target="workers").rpc(...)``."""
        return self._with_opts(self._opts.merge(**opts))

    def set_dependency(self, name: str, obj: Any) -> None:
        """Make ``obj`` available to every durable function as ``ctx.get_dependency(name)``."""
        self._dependencies[name] = obj

    @overload
    def register(self, *, name: str | None = None, version: int = 1) -> Callable[[Callable[..., Any]], Function[Any, Any]]: ...
    @overload
    def register(self, func: Callable[..., Any], *, name: str | None = None, version: int = 1) -> Function[Any, Any]: ...

    def register(self, func: Callable[..., Any] | None = None, *, name: str | None = None,
                 version: int = 1) -> Any:
        """Register a function: ``@resonate.register``, ``@resonate.register(name="x", version=2)``,
        or ``resonate.register(f)``. Its first parameter is the ``Context``."""

        def wrap(f: Callable[..., Any]) -> Function[Any, Any]:
            if isinstance(f, Function):
                f = f.func
            if not callable(f):
                raise TypeError(f"register takes a function, got {type(f).__name__}")
            fname = name or f.__name__
            self._registry.add(f, fname, version)
            return Function(self, fname, version, f, Options())

        return wrap(func) if func is not None else wrap

    def start(self) -> None:
        """Start taking work (called by the first run/rpc; call it yourself in a worker)."""
        self._runtime.start()

    def stop(self) -> None:
        """Stop: heartbeats first, so the store can hand unfinished work to another process (the starts
        ``begin_rpc`` queued are sent before the transport closes)."""
        self._runtime.stop()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until this process runs no execution (each finished or suspended); False on timeout."""
        return self._runtime.wait_idle(timeout)

    def status(self) -> Status:
        """Counts of promises and tasks by state; from a daemon also its pid, socket and workers."""
        return self._transport.call(GetStatus())

    def gc(self, older_than: float, *, dry_run: bool = False) -> Collected:
        """Delete the workflows (whole call graphs) and standalone promises that completed more than
        ``older_than`` seconds ago, with their tasks and callbacks, and give the file's free pages back.
        Never a pending promise, nothing of a workflow still running, never a schedule. ``dry_run``:
        count only. A daemon does this on its own for what is older than its ``--retention``. Example::

            done = resonate.gc(7 * 86400, dry_run=True)
            print(done.promises, "promises would go")
        """
        return self._transport.call(CollectGarbage(int(older_than * 1000), dry_run))

    def __enter__(self) -> Resonate:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- invocations ------------------------------------------------------------------------------
    def _resolve(self, func: Callable[..., Any] | str, args: tuple[Any, ...] = (),
                 kwargs: dict[str, Any] | None = None) -> tuple[str, int]:
        """The registered name and version; NotRegistered, or TypeError when the arguments do not fit its
        signature: both now, before anything is stored."""
        name, version = self._registry.name_of(func, must_be_registered=True)
        if self._opts.version:
            version = self._opts.version
        fn, _ = self._registry.get(name, version)  # fail now, with the registered names, if unknown
        retry.check_args(fn, name, args, kwargs or {})
        return name, version

    def run(self, id: str, func: Callable[..., Any] | str, *args: Any, **kwargs: Any) -> Any:
        """Run ``func`` durably here under the promise ``id`` and return its value (or the stored one)."""
        return self.begin_run(id, func, *args, **kwargs).result()

    def begin_run(self, id: str, func: Callable[..., Any] | str, *args: Any, **kwargs: Any) -> Handle[Any]:
        name, version = self._resolve(func, args, kwargs)
        self.start()
        fut, new = self._runtime.future(id)
        if not new:
            return Handle(id, fut)
        opts = self._opts
        timeout = self._transport.now() + int(opts.timeout * 1000)
        tags = {**opts.tags, TAG_INVOKE: f"poll://any@{self._group}/{self._pid}", TAG_SCOPE: "global",
                TAG_ROOT: id, TAG_FUNC: name}
        try:
            created = self._transport.call(CreatePromiseAndTask(
                id, timeout, self._pid, self._runtime.ttl_ms, codec.encode_param(name, args, kwargs, version), tags,
                opts.ikey(id)))
            if created.task is not None:  # new: claimed by us at once, and nothing recorded under it yet
                self._runtime.submit(Claimed(created.task, created.promise, None, graph={}))
            else:
                self._runtime.watch(created.promise)
        except BaseException as exc:
            self._runtime.settle_handles(id, (False, exc))
        return Handle(id, fut)

    def rpc(self, id: str, func: Callable[..., Any] | str, *args: Any, **kwargs: Any) -> Any:
        """Have a worker of the target group run ``func`` under the promise ``id``; return its value."""
        return self.begin_rpc(id, func, *args, **kwargs).result()

    def begin_rpc(self, id: str, func: Callable[..., Any] | str, *args: Any, **kwargs: Any) -> Handle[Any]:
        if isinstance(func, str):
            name, version = func, self._opts.version
            if self._transport.in_process:  # local mode: nobody else could ever run it
                self._resolve(name, args, kwargs)
            elif self._registry.has(name, version):  # registered here too: check its arguments here
                self._resolve(name, args, kwargs)
        else:
            name, version = self._resolve(func, args, kwargs)
        self.start()
        fut, new = self._runtime.future(id)
        if not new:
            return Handle(id, fut)
        opts = self._opts
        timeout = self._transport.now() + int(opts.timeout * 1000)
        tags = {**opts.tags, TAG_INVOKE: address_of(opts.target), TAG_SCOPE: "global", TAG_ROOT: id,
                TAG_FUNC: name}
        try:
            param = codec.encode_param(name, args, kwargs, version)
            op = CreateAndSubscribe(id, timeout, self._pid, self._runtime.unicast, param, tags, opts.ikey(id),
                                    subscription_timeout=FOREVER)
            # On a daemon, sent in the background with the starts queued beside it (starts.py).
            self._transport.start_soon(op, functools.partial(self._started, id))
        except BaseException as exc:
            self._runtime.settle_handles(id, (False, exc))
        return Handle(id, fut)

    def _started(self, id: str, created: Created | BaseException) -> None:
        if isinstance(created, BaseException):
            self._runtime.settle_handles(id, (False, created))
        else:
            self._runtime.settle_promise(created.promise)

    def schedule(self, name: str, cron: str, func: Callable[..., Any] | str, *args: Any,
                 **kwargs: Any) -> Schedule:
        """Invoke ``func(*args, **kwargs)`` on a cron schedule (UTC), durably: the store keeps it.

        Each tick creates the invocation ``{name}.{tick ms}``, run by a worker of the target
        (``.options(target=...)``; default this instance's group). Example::

            resonate.schedule("nightly-report", "0 2 * * *", report, "eu")
        """
        if isinstance(func, str):
            fname, version = func, self._opts.version
        else:
            fname, version = self._resolve(func, args, kwargs)
        opts = self._opts
        target = address_of(opts.target if opts.target != "default" else self._group)
        tags = {**opts.tags, TAG_INVOKE: target, TAG_SCOPE: "global", TAG_FUNC: fname}
        return self._transport.call(CreateSchedule(
            name, cron, f"{name}.{{{{.timestamp}}}}", int(opts.timeout * 1000),
            codec.encode_param(fname, args, kwargs, version), tags, idempotency_key=name)).schedule

    def retry(self, id: str) -> Handle[Any]:
        """Run a rejected, canceled or timed-out workflow again under the same id: every step that
        resolved keeps its result (it does not run again), the others run again. ``WorkflowRunning``
        while it still runs. Example::

            resonate.retry("order-7").result()
        """
        # Not started before the request: a refused retry must not start this process's runtime (which
        # would take up other pending work). The reopened task is INIT: sent to whoever connects.
        self._transport.call(RetryWorkflow(id))
        return self.get(id)

    def fork(self, id: str, from_step: int, new_id: str | None = None) -> Handle[Any]:
        """A new workflow with the same function and arguments that reuses the results of the first
        ``from_step`` steps of ``id`` and runs the rest (``new_id`` default: ``{id}-fork-N``). Example::

            handle = resonate.fork("order-7", from_step=2)
            print(handle.id, handle.result())
        """
        fork = self._transport.call(ForkWorkflow(id, from_step, new_id))
        return self.get(fork.id)

    def get(self, id: str) -> Handle[Any]:
        """A handle on an existing promise (an execution started elsewhere, or earlier)."""
        self.start()
        fut, new = self._runtime.future(id)
        if new:
            try:
                self._runtime.watch(self._transport.call(GetPromise(id)))
            except BaseException as exc:
                self._runtime.settle_handles(id, (False, exc))
        return Handle(id, fut)


class Function(Generic[P, R]):
    """A registered function: call it plainly, or durably with ``run`` / ``begin_run`` / ``rpc``.

    Example::

        @resonate.register
        def greet(ctx: Context, name: str) -> str:
            return f"hello {name}"

        greet.run("greet-ada", "ada")                            # 'hello ada'
        greet.options(timeout=60).begin_run("greet-bob", "bob")  # Handle
    """

    def __init__(self, resonate: Resonate, name: str, version: int, func: Callable[..., Any],
                 opts: Options) -> None:
        functools.update_wrapper(self, func)
        self._resonate = resonate
        self.name = name
        self.version = version
        self.func = func
        self._opts = opts

    @property
    def registration(self) -> tuple[str, int]:
        """The name and version it is registered under (how ``Registry.name_of`` knows it)."""
        return self.name, self.version

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.func(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Function({self.name!r}, version={self.version})"

    def options(self, **opts: Any) -> Function[P, R]:
        """The same function with other default options for its invocations."""
        return Function(self._resonate, self.name, self.version, self.func, self._opts.merge(**opts))

    def _client(self) -> Resonate:
        return self._resonate._with_opts(self._opts.merge(version=self.version))

    def run(self, id: str, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run durably in this process (or pick up the stored result) and return the value."""
        return self.begin_run(id, *args, **kwargs).result()

    def begin_run(self, id: str, *args: P.args, **kwargs: P.kwargs) -> Handle[R]:
        return self._client().begin_run(id, self, *args, **kwargs)

    def rpc(self, id: str, *args: P.args, **kwargs: P.kwargs) -> R:
        """Have a worker of the target group run it; wait for the value."""
        return self.begin_rpc(id, *args, **kwargs).result()

    def begin_rpc(self, id: str, *args: P.args, **kwargs: P.kwargs) -> Handle[R]:
        return self._client().begin_rpc(id, self.name, *args, **kwargs)
