"""``resonate invoke``: run a registered function durably and print its result."""

from __future__ import annotations

import json
import re
import secrets
import sys
import threading
from contextlib import nullcontext
from typing import Any

import typer
from resonate_daemon.protocol.records import Promise, address_of, parse_address
from resonate_daemon.protocol.results import Status
from rich.markup import escape

from resonate.errors import PromiseNotFound
from resonate.handle import Handle
from resonate.history import steps_of
from resonate.render import error_of, promise_doc

from . import exits
from .client import Client
from .invoke_many import invoke_many, other_invocation
from .output import View, err, fail, json_mode, out, output
from .render import print_error
from .session import APP_HELP, import_app, parse_duration, parse_tags, parse_value, using

WORKER_GROUP = "default"  # the group `invoke --app` joins through a daemon: where workers run by default

EXAMPLE = """
Examples:

  resonate invoke factorial 5 --app examples/factorial.py     # embedded: prints 120

  resonate invoke approve_order '{"id": 7}' --id order-7 --no-wait   # through a daemon: prints order-7

  seq 1000 | resonate invoke double --from-file -              # 1,000 executions, one line each
"""


def default_id(func: str, args: list[str]) -> str:
    """Readable and unique: ``factorial-5-1a2b3c``."""
    parts = [func, *args]
    text = re.sub(r"[^A-Za-z0-9_.-]+", "_", "-".join(parts)).strip("_")[:48] or "invoke"
    return f"{text}-{secrets.token_hex(3)}"


@output()
def invoke(
    ctx: typer.Context,
    func: str = typer.Argument(..., metavar="FUNC", help="The registered function's name."),
    args: list[str] = typer.Argument(None, metavar="ARGS",
                                     help="Positional arguments: each JSON where it parses, else a string."),
    kwarg: list[str] = typer.Option(None, "--kwarg", "-k", help="A keyword argument k=v (v JSON where it parses)."),
    id: str = typer.Option(None, "--id", help="The promise id (default: FUNC-ARGS-<6 hex>)."),
    target: str = typer.Option(None, "--target", help="Where workers run it: a group name or poll:// address."),
    group: str = typer.Option(None, "--group", "-g", help="Shorthand for --target poll://any@GROUP."),
    timeout: str = typer.Option(None, "--timeout", help="The execution's timeout (30s, 5m, 2h, 1d; default 1y)."),
    version: int = typer.Option(None, "--version", help="Function version (default: the latest registered)."),
    app: str = typer.Option(None, "--app", "-a", help=APP_HELP + " Needed without a daemon."),
    no_wait: bool = typer.Option(False, "--no-wait", help="Print the id and return; do not wait for the result."),
    queue: bool = typer.Option(False, "--queue", help="Through a daemon: wait even if no connected worker has FUNC."),
    from_file: str = typer.Option(None, "--from-file", "-f", metavar="FILE",
                                  help="Start one execution per line of FILE ('-': stdin), through a daemon: "
                                       'each line a JSON array of arguments, {"id", "args", "kwargs"}, or one '
                                       "value. Prints ID<TAB>STATE<TAB>RESULT per line."),
) -> View:
    """Invoke FUNC durably and print its result (JSON).

    --app names your code, and it runs here: embedded on the database file when no daemon answers, or
    through the daemon with this process joining the group (--group, default: default) as a worker until
    the result is in. Without --app, a worker of the target group (--target/--group, default: default)
    runs it. Re-invoking an id with the same function and arguments waits for it, or prints its stored
    result at once; with others, it is a conflict (exit 5): the id is taken.
    """
    if target and group:
        fail("give --target or --group, not both", exits.USAGE)
    if from_file is not None and (args or kwarg or id or app):
        fail("--from-file gives the arguments and ids of every execution: no ARGS, --kwarg, --id or --app with it",
             exits.USAGE)
    secs = parse_duration(timeout)
    kwargs: dict[str, Any] = {k: parse_value(v) for k, v in parse_tags(kwarg).items()}
    values = [parse_value(a) for a in (args or [])]
    pid = id or default_id(func, list(args or []))
    module = import_app(app)
    where = target or (f"poll://any@{group}" if group else None)
    here = module is not None  # your code, run by this process
    with using(ctx, app=module, worker_group=(group_of(where) if where else WORKER_GROUP) if here else None) as client:
        if from_file is not None:
            return _from_file(client, func, from_file, where, {"timeout": secs, "version": version or None},
                              no_wait, queue)
        existing = _existing(client, pid, func, values, kwargs)
        if existing is not None and not existing.pending:
            return View(existing.to_json(), lambda: print(pid)) if no_wait else report(existing)
        opts: dict[str, Any] = {"timeout": secs, "version": version or None}
        if client.daemon and not here:
            opts["target"] = where or "default"
            group = group_of(opts["target"])
            status = client.status()
            if not status.has_function(group, func):
                message = no_worker(status, group, func)
                if not (no_wait or queue):
                    fail(message + "; start one (resonate worker APP --group GROUP), pass --app to run it here, or "
                         "--queue to wait for one", exits.NOT_FOUND, kind="NoWorker")
                if not json_mode():
                    err.print(f"[yellow]note:[/] {message}; it waits until one connects", highlight=False)
            handle = client.resonate.options(**opts).begin_rpc(pid, func, *values, **kwargs)
        else:
            if module is None:
                fail(f"no daemon answers at {client.target.socket_path}, so {func} would run here; pass --app "
                     "with your code (e.g. --app examples/factorial.py), or start one: resonate serve --app ...",
                     exits.USAGE)
            if where and not client.daemon:
                fail("--target/--group need a daemon (workers run there); without one, invoke runs here",
                     exits.USAGE)
            client.resonate.registry.get(func, version or 0)  # NotRegistered now, naming what is
            # Run here: claimed by this process at once (through a daemon, as a worker of the group, so
            # that what it waits for comes back here, or to another worker of the group if we are gone).
            try:
                handle = client.resonate.options(**opts).begin_run(pid, func, *values, **kwargs)
            except TypeError as exc:  # the arguments do not fit the function: nothing was stored
                fail(str(exc), exits.USAGE, kind="TypeError")
        if no_wait:
            if not client.daemon or here:  # this process runs it: until done or suspended, then we go
                client.resonate.wait_idle()
            promise = client.resonate.promises.get(pid)
            return View(promise.to_json(), lambda: print(pid))
        return finish(client, handle, func, where or "default")


def _from_file(client: Client, func: str, path: str, where: str | None, opts: dict[str, Any], no_wait: bool,
               queue: bool) -> View:
    if not client.daemon:
        fail(f"--from-file starts executions for a daemon's workers, and no daemon answers at "
             f"{client.target.socket_path}; start one: resonate serve", exits.UNREACHABLE, kind="Unreachable")
    opts["target"] = where or "default"
    group = group_of(opts["target"])
    status = client.status()
    if not status.has_function(group, func):
        message = no_worker(status, group, func)
        if not (no_wait or queue):
            fail(message + "; start one (resonate worker APP --group GROUP), or --queue to wait for one",
                 exits.NOT_FOUND, kind="NoWorker")
        if not json_mode():
            err.print(f"[yellow]note:[/] {message}; they wait until one connects", highlight=False)
    return invoke_many(client, func, path, opts, no_wait)


def _existing(client: Client, id: str, func: str, args: list[Any], kwargs: dict[str, Any]) -> Promise | None:
    """The promise ``id`` if it exists and is this same invocation; a conflict (exit 5) if it is another."""
    try:
        found = client.resonate.promises.get(id)
    except PromiseNotFound:
        return None
    other = other_invocation(found, func, args, kwargs)
    if other is not None:
        fail(f"{id!r} is taken: it is {other}; pick another --id (or leave --id out for a fresh one)",
             exits.CONFLICT, kind="PromiseAlreadyExists")
    return found


def group_of(target: str) -> str:
    return parse_address(address_of(target)).group


def no_worker(status: Status, group: str, func: str) -> str:
    """'no worker of group G has F; connected: pid (f, g), ...' (what the daemon's status says)."""
    connected = status.functions.get(group, {})
    shown = ", ".join(f"{pid[:12]} ({', '.join(fs) if fs else 'nothing'})" for pid, fs in connected.items() if fs is not None)
    return f"no worker of group {group!r} has {func!r}; connected: {shown or 'none'}"


def finish(client: Client, handle: Handle[Any], func: str, target: str) -> View:
    try:
        with _spinner(client, handle.id, func, target):
            exc = handle.future.exception()  # blocks until the execution completes; never raises it
    except KeyboardInterrupt:
        err.print(f"stopped waiting; {handle.id} goes on (see: resonate promises get {handle.id})")
        raise typer.Exit(130) from None
    promise = client.resonate.promises.get(handle.id)
    if promise.pending:  # the handle failed without the promise completing: a transport error
        raise exc if exc is not None else RuntimeError("the execution ended without a result")
    return report(promise)


def report(promise: Promise) -> View:
    """A completed promise's value (or its error on stderr), ending with the state's exit code."""
    value = promise.value.json()
    code = exits.code_for_state(promise.state)
    info = error_of(promise)

    def human() -> None:
        if code == exits.OK:
            out.print_json(json.dumps(value)) if sys.stdout.isatty() else print(json.dumps(value))
            return
        message = str(info) if info is not None else value.get("__error__") if isinstance(value, dict) else value
        what = {"REJECTED_TIMEDOUT": "timed out", "REJECTED_CANCELED": "was canceled"}.get(promise.state, "failed")
        if info is not None:
            print_error(info)
        err.print(f"[bold red]error:[/] {promise.id} {what}" + (f": {escape(str(message))}" if message else ""),
                  highlight=False)

    return View({**promise_doc(promise), "result": value}, human, exit=code)


def _spinner(client: Client, id: str, func: str, target: str) -> Any:
    """On a terminal: a spinner that says what the execution is doing now (which step runs, a retry's
    attempt, its last error and when the next attempt is), updated as the store changes."""
    if not sys.stderr.isatty():
        return nullcontext()
    return Spinner(client, id, func)


class Spinner:
    REFRESH_S = 1.0

    def __init__(self, client: Client, id: str, func: str) -> None:
        self.client, self.id, self.func = client, id, func
        self.base = f"waiting for {id} ({func})"
        self.changed = threading.Event()
        self.done = threading.Event()
        self.thread: threading.Thread | None = None
        self.status: Any = None
        self.unwatch: Any = None

    def __enter__(self) -> Spinner:
        self.status = err.status(escape(self.base))
        self.status.__enter__()
        try:
            self.unwatch = self.client.resonate.promises.watch(self.id, self.changed.set)
        except Exception:  # a spinner that cannot watch still spins
            self.unwatch = None
        self.thread = threading.Thread(target=self._run, name="resonate-spinner", daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        while not self.done.is_set():
            self.changed.clear()
            try:
                steps = steps_of(self.client.resonate.promises.tree(self.id, limit=1000))
            except Exception:
                steps = []
            now = next((s.note for s in reversed(steps) if s.promise.pending and s.note.startswith("retrying")),
                       None) or next((s.note for s in reversed(steps[1:]) if s.promise.pending and s.note), "")
            self.status.update(escape(f"{self.id} ({self.func}) · {now}" if now else self.base))
            self.changed.wait(self.REFRESH_S)

    def __exit__(self, *exc: Any) -> None:
        self.done.set()
        self.changed.set()
        if self.thread is not None:
            self.thread.join(timeout=2.0)
        if self.unwatch is not None:
            self.unwatch()
        self.status.__exit__(*exc)
