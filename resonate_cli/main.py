"""The ``resonate`` command: the app, global flags, and the small commands (status, stop, tree, tasks, workers).

Each command parses, makes one call into ``resonate`` / ``resonate_daemon`` (through ``backend``), and
renders. Without a daemon, commands work embedded on the database file; see ``backend.open_backend``.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import typer
from rich.table import Table

from . import exits, invoke, promises, schedules, serve
from .backend import probe
from .render import emit_json, emit_lines, err, fail, out, state_text, tree, tree_json, when
from .session import JSON_HELP, JSON_LINES_HELP, target_of, using

VERSION = "0.1.0"
TREE_LIMIT = 5000  # nodes: a call graph bigger than this is cut, with a note, rather than hang the terminal

HELP = f"""Durable workflows for Python, from your terminal.

Without a daemon, commands work embedded on the database file (--db); with one (resonate serve), they go through it.

Example: resonate invoke factorial 5 --app examples/factorial.py

{exits.HELP}
"""

app = typer.Typer(name="resonate", help=HELP, no_args_is_help=True, rich_markup_mode="rich",
                  context_settings={"help_option_names": ["-h", "--help"]}, pretty_exceptions_enable=False)


def _version() -> str:
    try:
        from importlib.metadata import version

        v = version("resonate-local")
    except Exception:
        v = VERSION
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
    db: str = typer.Option(None, "--db", envvar="RESONATE_DB", help="Database file when no daemon answers."),
    version: bool = typer.Option(False, "--version", "-V", is_eager=True, callback=_print_version,
                                 help="Print the version and exit."),
) -> None:
    from .backend import Target

    ctx.obj = Target(socket or None, url or None, token or None, db or None)


app.command(epilog=invoke.EXAMPLE)(invoke.invoke)
app.add_typer(promises.app, name="promises")
app.add_typer(schedules.app, name="schedules")
app.command()(serve.serve)
app.command()(serve.worker)


@app.command()
def status(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Is a daemon up? Its socket, database, version, promises by state, workers by group.

    Example: resonate status --json
    """
    with using(ctx, as_json=as_json) as backend:
        doc = backend.status()
    if as_json:
        emit_json(doc)
        return
    table = Table(box=None, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    if doc["mode"] == "daemon":
        table.add_row("daemon", f"[green]up[/] (pid {doc.get('pid')}, version {doc.get('version')})")
        table.add_row("socket", str(doc.get("socket")))
        if doc.get("http"):
            table.add_row("http", str(doc["http"]))
    else:
        table.add_row("daemon", f"[yellow]not running[/] at {target_of(ctx).socket_path}: embedded mode")
    table.add_row("database", str(doc.get("db")))
    table.add_row("promises", ", ".join(f"{state_text(k)} {v}" for k, v in sorted(doc["promises"].items())) or "none")
    table.add_row("tasks", ", ".join(f"{k} {v}" for k, v in sorted(doc["tasks"].items())) or "none")
    workers = doc.get("workers") or {}
    table.add_row("workers", ", ".join(f"{g}: {len(p)}" for g, p in workers.items()) or "none connected")
    out.print(table)


@app.command()
def stop(ctx: typer.Context,
         timeout: float = typer.Option(10.0, "--timeout", help="Seconds to wait for it to exit.")) -> None:
    """Stop the daemon (SIGTERM): it drains requests and exits.

    Example: resonate stop
    """
    target = target_of(ctx)
    status = probe(target)
    if status is None:
        fail(f"no resonate daemon answers at {target.where}", exits.UNREACHABLE)
    pid = status.get("pid")
    if not isinstance(pid, int):
        fail("the daemon does not report its pid; stop it where it runs (Ctrl+C) or with kill", exits.ERROR)
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        fail(f"the daemon's pid {pid} is not running here (another machine or container?)", exits.ERROR)
    except PermissionError:
        fail(f"not allowed to signal pid {pid}", exits.ERROR)
    deadline = time.monotonic() + timeout
    while probe(target) is not None:
        if time.monotonic() > deadline:
            fail(f"sent SIGTERM to {pid}, but it still answers after {timeout:g}s", exits.TIMED_OUT)
        time.sleep(0.05)  # polling a process we do not own for its exit; bounded by the deadline
    err.print(f"stopped the daemon (pid {pid})", highlight=False)


@app.command("tree")
def tree_(ctx: typer.Context, id: str = typer.Argument(..., help="The root (or any) promise id.",
                                                       autocompletion=promises.complete_id),
          as_json: bool = typer.Option(False, "--json", help=JSON_HELP + " Nested under 'children'.")) -> None:
    """The call graph under a promise: functions, run or rpc, state, duration, sleeping/waiting.

    Example: resonate tree order-7
    """
    with using(ctx, as_json=as_json) as backend:
        root = backend.resonate.promises.get(id)
        children: dict[str, list[Any]] = {}
        todo, seen = [root.id], 1
        while todo and seen < TREE_LIMIT:
            pid = todo.pop()
            kids = backend.children(pid)
            children[pid] = kids
            seen += len(kids)
            todo.extend(k.id for k in kids)
    if as_json:
        emit_json(tree_json(root, children))
        return
    out.print(tree(root, children))
    if todo:
        err.print(f"(cut at {TREE_LIMIT} promises)")


tasks_app = typer.Typer(help="Tasks: invocations and resumes waiting for, or held by, workers.", no_args_is_help=True)
app.add_typer(tasks_app, name="tasks")


@tasks_app.command("list")
def tasks_list(ctx: typer.Context,
               state: list[str] = typer.Option(None, "--state", "-s", help="INIT, ENQUEUED, CLAIMED, COMPLETED (repeatable)."),
               limit: int = typer.Option(50, "--limit", "-n", min=1, max=1000),
               as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
               json_lines: bool = typer.Option(False, "--json-lines", help=JSON_LINES_HELP)) -> None:
    """List tasks, newest first.

    Example: resonate tasks list --state CLAIMED
    """
    states = tuple(s.upper() for s in state) if state else None
    with using(ctx, as_json=as_json) as backend:
        found = backend.tasks(states, limit)
    if as_json:
        emit_json({"tasks": found})
    elif json_lines:
        emit_lines(found)
    else:
        table = Table(box=None, header_style="bold")
        for col in ("ID", "COUNTER", "TYPE", "STATE", "ROOT", "PROCESS", "LEASE UNTIL"):
            table.add_column(col, no_wrap=True, overflow="ellipsis", max_width=None if col == "ID" else 24)
        for t in found:
            table.add_row(t["id"], str(t["counter"]), t.get("type", ""), t.get("state", ""),
                          t.get("rootPromiseId", ""), t.get("processId") or "-",
                          when(t.get("expiresAt")) if t.get("state") == "CLAIMED" else "-")
        out.print(table)
        if not found:
            err.print("no tasks")


@app.command()
def workers(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Connected workers by group, and the tasks each holds.

    Example: resonate workers --json
    """
    with using(ctx, as_json=as_json) as backend:
        groups = backend.workers()
        claimed = backend.tasks(("CLAIMED",), 1000)
    held: dict[str, list[str]] = {}
    for t in claimed:
        held.setdefault(t.get("processId") or "", []).append(t["id"])
    if as_json:
        emit_json({"workers": groups, "claimed": held})
        return
    if not groups:
        err.print("no workers connected" + ("" if backend.daemon else " (embedded mode: no daemon)"))
        return
    table = Table(box=None, header_style="bold")
    for col in ("GROUP", "PROCESS", "CLAIMED TASKS"):
        table.add_column(col)
    for group, pids in groups.items():
        for pid in pids:
            table.add_row(group, pid, ", ".join(held.get(pid, [])) or "-")
    out.print(table)
