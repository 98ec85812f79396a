"""The ``Resonate`` client: register functions, run them durably, and reach their promises."""

from __future__ import annotations

import copy
import inspect
import uuid
from collections.abc import Callable
from typing import Any, overload

from resonate_daemon.records import TAG_INVOKE, TAG_ROOT, TAG_SCOPE, Schedule

from . import codec
from .execution import TAG_FUNC
from .handle import Handle
from .options import Options
from .promises import Promises
from .registry import Function, Registry
from .runtime import SUBSCRIPTION_TIMEOUT, Runtime
from .schedules import Schedules
from .transport import LocalTransport, Transport


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
        self._pid = pid or uuid.uuid4().hex
        self._transport = transport
        self._runtime = Runtime(transport, self._registry, self._dependencies, group, self._pid, ttl, workers)
        self._promises = Promises(transport)
        self._schedules = Schedules(transport)

    @classmethod
    def local(cls, path: str | None = None, *, group: str = "default", pid: str | None = None,
              ttl: float = 10, workers: int | None = None, durability: str = "full",
              dependencies: dict[str, Any] | None = None, clock: Any = None) -> Resonate:
        """Everything in this process: SQLite in memory, or in the file ``path`` so a crash resumes."""
        return cls(LocalTransport(path, durability=durability, clock=clock), group=group, pid=pid, ttl=ttl,
                   workers=workers, dependencies=dependencies)

    @classmethod
    def remote(cls, group: str = "default", *, socket: str | None = None, url: str | None = None,
               token: str | None = None, pid: str | None = None, ttl: float = 10,
               workers: int | None = None, dependencies: dict[str, Any] | None = None) -> Resonate:
        """A worker and client of a daemon (``resonate serve``), over its Unix socket or TCP URL."""
        from .remote import RemoteTransport

        return cls(RemoteTransport(socket=socket, url=url, token=token), group=group, pid=pid, ttl=ttl,
                   workers=workers, dependencies=dependencies)

    # -- configuration ----------------------------------------------------------------------------
    @property
    def pid(self) -> str:
        return self._pid

    @property
    def group(self) -> str:
        return self._group

    @property
    def promises(self) -> Promises:
        return self._promises

    @property
    def schedules(self) -> Schedules:
        return self._schedules

    @property
    def registry(self) -> Registry:
        return self._registry

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
        """Stop: heartbeats first, so the store can hand unfinished work to another process."""
        self._runtime.stop()

    def __enter__(self) -> Resonate:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- invocations ------------------------------------------------------------------------------
    def _resolve(self, func: Callable[..., Any] | str) -> tuple[str, int]:
        name, version = self._registry.name_of(func, must_be_registered=True)
        if self._opts.version:
            version = self._opts.version
        self._registry.get(name, version)  # fail now, with the registered names, if unknown
        return name, version

    def run(self, id: str, func: Callable[..., Any] | str, *args: Any, **kwargs: Any) -> Any:
        """Run ``func`` durably here under the promise ``id`` and return its value (or the stored one)."""
        return self.begin_run(id, func, *args, **kwargs).result()

    def begin_run(self, id: str, func: Callable[..., Any] | str, *args: Any, **kwargs: Any) -> Handle[Any]:
        name, version = self._resolve(func)
        self.start()
        fut, new = self._runtime.future(id)
        if not new:
            return Handle(id, fut)
        opts = self._opts
        timeout = self._transport.now() + int(opts.timeout * 1000)
        tags = {**opts.tags, TAG_INVOKE: f"poll://any@{self._group}/{self._pid}", TAG_SCOPE: "global",
                TAG_ROOT: id, TAG_FUNC: name}
        try:
            created = self._transport.create_promise(
                id, timeout, codec.encode_param(name, args, kwargs, version), tags, opts.ikey(id),
                claim=(self._pid, self._runtime.ttl_ms))
            if created.task is not None:
                from resonate_daemon.engine import Claimed

                self._runtime.submit(Claimed(created.task, created.promise, None))
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
        else:
            name, version = self._resolve(func)
        self.start()
        fut, new = self._runtime.future(id)
        if not new:
            return Handle(id, fut)
        opts = self._opts
        target = opts.target if opts.target.startswith("poll://") else f"poll://any@{opts.target}"
        timeout = self._transport.now() + int(opts.timeout * 1000)
        tags = {**opts.tags, TAG_INVOKE: target, TAG_SCOPE: "global", TAG_ROOT: id, TAG_FUNC: name}
        try:
            param = codec.encode_param(name, args, kwargs, version)
            subscribe = getattr(self._transport, "create_and_subscribe", None)
            if subscribe is not None:  # the daemon: one request instead of create, then subscribe
                self._runtime.settle_promise(subscribe(id, timeout, param, tags, opts.ikey(id), self._pid,
                                                       SUBSCRIPTION_TIMEOUT, self._runtime.unicast))
            else:
                self._runtime.watch(self._transport.create_promise(id, timeout, param, tags, opts.ikey(id)).promise)
        except BaseException as exc:
            self._runtime.settle_handles(id, (False, exc))
        return Handle(id, fut)

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
            fname, version = self._resolve(func)
        opts = self._opts
        target = opts.target if opts.target != "default" else f"poll://any@{self._group}"
        target = target if target.startswith("poll://") else f"poll://any@{target}"
        tags = {**opts.tags, TAG_INVOKE: target, TAG_SCOPE: "global", TAG_FUNC: fname}
        return self._transport.create_schedule(
            name, cron, f"{name}.{{{{.timestamp}}}}", int(opts.timeout * 1000),
            codec.encode_param(fname, args, kwargs, version), tags, idempotency_key=name)[1]

    def get(self, id: str) -> Handle[Any]:
        """A handle on an existing promise (an execution started elsewhere, or earlier)."""
        self.start()
        fut, new = self._runtime.future(id)
        if new:
            try:
                self._runtime.watch(self._transport.get_promise(id))
            except BaseException as exc:
                self._runtime.settle_handles(id, (False, exc))
        return Handle(id, fut)


def is_generator_function(func: Callable[..., Any]) -> bool:
    return inspect.isgeneratorfunction(getattr(func, "func", func))
