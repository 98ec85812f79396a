"""The ``resonate`` command: the app, global flags, and the small commands (status, stop, tree, tasks, workers).

Each command parses, makes one SDK call on the client ``session.using`` opens, and returns a ``View`` that
``output`` renders. Without a daemon, commands work embedded on the database file; see ``client``.
"""

from __future__ import annotations

import inspect
import os
import re
import signal
import time
from typing import Any

import typer
from resonate_daemon.protocol.records import Task
from resonate_daemon.protocol.results import Status
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from resonate.history import steps_of
from resonate.render import when

from . import exits, gc, invoke, promises, schedules, serve, workflows
from .follow import follow as follow_tree
from .history import rich_tree, steps_table, tree_json
from .output import JSON_HELP, View, err, fail, out, output
from .render import print_error, state_text
from .session import CA_FILE_HELP, TOKEN_FILE_HELP, probe_or_fail, target_of, token_from, using

TREE_LIMIT = 5000  # nodes: a call graph bigger than this is cut, with a note, rather than hang the terminal

HELP = f"""Durable workflows for Python, from your terminal.

Without a daemon, commands work embedded on the database file (--db); with one (resonate serve), they go through it.

Example: resonate invoke factorial 5 --app examples/factorial.py

{exits.HELP}
"""

GLOBAL_FLAGS = ("--socket", "--url", "--token", "--token-file", "--ca-file", "--db")


class Group(TyperGroup):
    """The root command: a global flag given after the command (``resonate steps X --db F``) fails as any
    unknown option does, but says where it goes."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:  # Typer's own click's NoSuchOption, which it does not export
            name = getattr(exc, "option_name", None)
            if type(exc).__name__ == "NoSuchOption" and name in GLOBAL_FLAGS and isinstance(exc.args, tuple):
                exc.message = (f"{getattr(exc, 'message', '')} for this command; {name} is a global option and goes "  # type: ignore[attr-defined]
                               f"before the command: resonate {name} VALUE COMMAND ...")
            raise


app = typer.Typer(name="resonate", help=HELP, no_args_is_help=True, rich_markup_mode="rich", cls=Group,
                  context_settings={"help_option_names": ["-h", "--help"]}, pretty_exceptions_enable=False)


def _version() -> str:
    try:
        from importlib.metadata import version

        v = version("resonate-local")
    except Exception:
        from resonate import __version__ as v
    return f"resonate (resonate-local) {v}"


def _print_version(value: bool) -> None:
    if value:
        print(_version())
        raise typer.Exit(0)


@app.callback()
def main(
    ctx: typer.Context,
    socket: str = typer.Option(None, "--socket", envvar="RESONATE_SOCKET", help="The daemon's Unix socket."),
    url: str = typer.Option(None, "--url", envvar="RESONATE_URL", help="The daemon's URL (TCP) instead of the socket."),
    token: str = typer.Option(None, "--token", envvar="RESONATE_TOKEN", help="Bearer token for --url."),
    token_file: str = typer.Option(None, "--token-file", envvar="RESONATE_TOKEN_FILE", help=TOKEN_FILE_HELP),
    ca_file: str = typer.Option(None, "--ca-file", envvar="RESONATE_CA_FILE", metavar="PEM", help=CA_FILE_HELP),
    db: str = typer.Option(None, "--db", envvar="RESONATE_DB", help="Database file (or postgresql:// URL) when no daemon answers."),
    version: bool = typer.Option(False, "--version", "-V", is_eager=True, callback=_print_version,
                                 help="Print the version and exit."),
) -> None:
    from .client import Target

    ctx.obj = Target(socket or None, url or None, token_from(ctx, token, token_file), db or None, ca_file or None)


app.command(epilog=invoke.EXAMPLE)(invoke.invoke)
app.add_typer(promises.app, name="promises")
app.add_typer(schedules.app, name="schedules")
app.add_typer(workflows.app, name="workflows")
app.command()(workflows.retry)
app.command()(workflows.fork)
app.command()(gc.gc)
app.command()(serve.serve)
app.command()(serve.worker)
app.command()(serve.ui)


@app.command()
@output()
def status(ctx: typer.Context) -> View:
    """Is a daemon up? Its socket, database, version, promises by state, workers by group. Exits 4 when no
    daemon answers (after showing the database file's counts).

    Example: resonate status --json
    """
    with using(ctx, read=True) as client:
        doc = client.status()
    return View(doc.to_json(), lambda: _status_table(doc, target_of(ctx).socket_path),
                exit=exits.OK if client.daemon else exits.UNREACHABLE)


def _status_table(doc: Status, socket: str) -> None:
    table = Table(box=None, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    if doc.mode == "daemon":
        table.add_row("daemon", f"[green]up[/] (pid {doc.pid}, version {doc.version})")
        table.add_row("socket", str(doc.socket))
        if doc.http:
            table.add_row("http", str(doc.http))
    else:
        table.add_row("daemon", f"[yellow]not running[/] at {socket}: embedded mode")
    table.add_row("database", str(doc.db))
    if doc.problem:
        table.add_row("problem", f"[bold red]{escape(doc.problem)}[/]")
    table.add_row("promises", ", ".join(f"{state_text(k)} {v}" for k, v in sorted(doc.promises.items())) or "none")
    table.add_row("tasks", ", ".join(f"{k} {v}" for k, v in sorted(doc.tasks.items())) or "none")
    table.add_row("workers", ", ".join(f"{g}: {len(p)}" for g, p in doc.workers.items()) or "none connected")
    out.print(table)


@app.command()
def stop(ctx: typer.Context,
         timeout: float = typer.Option(10.0, "--timeout", help="Seconds to wait for it to exit.")) -> None:
    """Stop the daemon (SIGTERM): it drains requests and exits.

    Example: resonate stop
    """
    target = target_of(ctx)
    found = probe_or_fail(target)
    if found is None:
        fail(f"no resonate daemon answers at {target.where}", exits.UNREACHABLE)
    pid = found.pid
    if not isinstance(pid, int):
        fail("the daemon does not report its pid; stop it where it runs (Ctrl+C) or with kill", exits.ERROR)
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        fail(f"the daemon's pid {pid} is not running here (another machine or container?)", exits.ERROR)
    except PermissionError:
        fail(f"not allowed to signal pid {pid}", exits.ERROR)
    deadline = time.monotonic() + timeout
    while probe_or_fail(target) is not None:
        if time.monotonic() > deadline:
            fail(f"sent SIGTERM to {pid}, but it still answers after {timeout:g}s", exits.TIMED_OUT)
        time.sleep(0.05)  # polling a process we do not own for its exit; bounded by the deadline
    err.print(f"stopped the daemon (pid {pid})", highlight=False)


@app.command("tree")
@output(lines=True, json_help=JSON_HELP + " Nested under 'children'.")
def tree_(ctx: typer.Context, id: str = typer.Argument(..., help="The root (or any) promise id.",
                                                       autocompletion=promises.complete_id),
          follow: bool = typer.Option(False, "--follow", "-f",
                                      help="Redraw as steps start and finish, until it completes (exit code as "
                                           "invoke's); with --json-lines, one event per change.")) -> View:
    """The call graph under a promise: functions, run or rpc, state, duration, attempts, worker, errors,
    and what is pending doing now (running, retrying, sleeping, waiting).

    Examples: resonate tree order-7 · resonate tree order-7 --follow · resonate tree order-7 -f --json-lines
    """
    with using(ctx, read=True) as client:
        if follow:
            return follow_tree(client, id, TREE_LIMIT)
        found = client.resonate.promises.tree(id, limit=TREE_LIMIT)
    steps = steps_of(found)

    def human() -> None:
        out.print(rich_tree(steps))
        if found.truncated:
            err.print(f"(cut at {TREE_LIMIT} promises)")

    docs = [s.to_json() for s in steps]
    return View(tree_json(steps), human, items=docs)


@app.command()
@output(lines=True)
def steps(ctx: typer.Context, id: str = typer.Argument(..., help="The workflow's (or any) promise id.",
                                                       autocompletion=promises.complete_id)) -> View:
    """Every step of a workflow, in order: function, arguments, state, start, duration, attempts, worker,
    and its error (or what it is doing now).

    Example: resonate steps order-7
    """
    with using(ctx, read=True) as client:
        found = client.resonate.promises.tree(id, limit=TREE_LIMIT)
    history = steps_of(found)
    docs = [s.to_json() for s in history]

    def human() -> None:
        out.print(steps_table(history))
        for s in history:
            if s.error is not None and s.error.traceback:
                err.print(f"[bold]{s.promise.id}[/] [red]{s.error}[/]", highlight=False)
                print_error(s.error)
        if found.truncated:
            err.print(f"(cut at {TREE_LIMIT} promises)")

    return View({"id": id, "steps": docs, "truncated": found.truncated}, human, items=docs)


tasks_app = typer.Typer(help="Tasks: invocations and resumes waiting for, or held by, workers.", no_args_is_help=True)
app.add_typer(tasks_app, name="tasks")


@tasks_app.command("list")
@output(lines=True)
def tasks_list(ctx: typer.Context,
               state: list[str] = typer.Option(None, "--state", "-s", help="INIT, ENQUEUED, CLAIMED, COMPLETED (repeatable)."),
               limit: int = typer.Option(50, "--limit", "-n", min=1, max=1000)) -> View:
    """List tasks, newest first.

    Example: resonate tasks list --state CLAIMED
    """
    with using(ctx, read=True) as client:
        found = client.resonate.tasks.search(state or None, limit=limit)
    docs = [t.to_json() for t in found]
    return View({"tasks": docs}, lambda: _tasks_table(found), items=docs)


def _tasks_table(found: list[Task]) -> None:
    table = Table(box=None, header_style="bold")
    for col in ("ID", "COUNTER", "TYPE", "STATE", "ROOT", "PROCESS", "LEASE UNTIL"):
        table.add_column(col, no_wrap=True, overflow="ellipsis", max_width=None if col == "ID" else 24)
    for t in found:
        table.add_row(t.id, str(t.counter), t.type, t.state, t.root_promise_id, t.process_id or "-",
                      when(t.expires_at) if t.state == "CLAIMED" else "-")
    out.print(table)
    if not found:
        err.print("no tasks")


@app.command()
@output()
def workers(ctx: typer.Context) -> View:
    """Connected workers by group, and the tasks each holds.

    Example: resonate workers --json
    """
    with using(ctx, read=True) as client:
        groups = client.status().workers
        claimed = client.resonate.tasks.search(("CLAIMED",), limit=1000)
        daemon = client.daemon
    held: dict[str, list[str]] = {}
    for t in claimed:
        held.setdefault(t.process_id or "", []).append(t.id)

    def human() -> None:
        if not groups:
            err.print("no workers connected" + ("" if daemon else " (embedded mode: no daemon)"))
            return
        table = Table(box=None, header_style="bold")
        for col in ("GROUP", "PROCESS", "CLAIMED TASKS"):
            table.add_column(col)
        for group, pids in groups.items():
            for pid in pids:
                table.add_row(group, pid, ", ".join(held.get(pid, [])) or "-")
        out.print(table)

    return View({"workers": groups, "claimed": held}, human)


def _unwrap_help(typer_app: typer.Typer) -> None:
    """Docstrings are wrapped at the source's width; rich keeps their line breaks, so a terminal's own
    wrapping cut each line again ("...when no / daemon answers, or / through..."). Each paragraph becomes
    one line for rich to wrap; a line that starts a list item, an indented block or an example stays."""
    for info in typer_app.registered_commands:
        fn = info.callback
        if fn is not None and fn.__doc__:
            fn.__doc__ = _unwrap(inspect.cleandoc(fn.__doc__))
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _unwrap_help(group.typer_instance)


def _unwrap(text: str) -> str:
    return re.sub(r"(?<=\S)\n(?=[^\s\-*#>|\d])(?!Example)", " ", text)


_unwrap_help(app)
