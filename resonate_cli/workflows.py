"""``resonate workflows list``, ``resonate retry`` and ``resonate fork``: the workflows (what was invoked, not
its steps), and acting on a failed one.

``retry`` runs a rejected, canceled or timed-out workflow again under its id: every step that resolved
keeps its result and does not run again. ``fork`` starts a new workflow with the same function and
arguments that reuses the results of the first N steps (the numbers ``resonate steps`` shows) and runs
the rest. Both wait for the result as ``invoke`` does: with ``--app`` this process runs it (embedded, or
through the daemon as a worker of the workflow's group); without, a worker of that group does.
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Any

import typer
from resonate_daemon.protocol.records import TAG_INVOKE, TAG_ROOT, Promise, invocation_of
from rich.markup import escape
from rich.table import Table

from resonate.render import duration, error_of, short, when

from . import exits
from .client import Client
from .invoke import finish, group_of, no_worker
from .output import View, err, fail, json_mode, out, output
from .render import state_text
from .session import APP_HELP, import_app, parse_duration, using

app = typer.Typer(help="The workflows: what was invoked, not its steps (resonate promises list has everything).",
                  no_args_is_help=True)

STATE_WORDS = "pending, resolved, rejected, canceled, timedout, failed (rejected, canceled or timed out), completed"


def parse_since(text: str | None) -> int | None:
    """``--since``: a duration back from now (30m, 2h, 1d) or a date/time (2026-12-01, 2026-12-01T09:00);
    milliseconds since the epoch."""
    if text is None:
        return None
    if re.fullmatch(r"\s*\d+(\.\d+)?\s*(ms|s|m|h|d|w|y)?\s*", text):
        secs = parse_duration(text) or 0.0
        return int((time.time() - secs) * 1000)
    try:
        return int(datetime.fromisoformat(text.strip()).timestamp() * 1000)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is neither a duration (30m, 2h, 1d) nor a date (2026-12-01, "
                                 "2026-12-01T09:00)") from None


@app.command("list")
@output(lines=True)
def list_(ctx: typer.Context,
          state: str = typer.Option(None, "--state", "-s", help=f"One of: {STATE_WORDS}."),
          func: str = typer.Option(None, "--func", "-f", help="Only workflows of this function."),
          since: str = typer.Option(None, "--since", help="Started at or after: a duration back (2h, 1d) or a date."),
          limit: int = typer.Option(50, "--limit", "-n", min=1, max=1000, help="At most this many (newest first)."),
          cursor: str = typer.Option(None, "--cursor", help="Continue from a previous page's cursor.")) -> View:
    """List workflows (the tops of call graphs), newest first, with how many match in all.

    Example: resonate workflows list --state failed --since 1d
    """
    start = parse_since(since)
    with using(ctx, read=True) as client:
        found, nxt, total = client.resonate.workflows.search(state=state, func=func, since=start, limit=limit,
                                                             cursor=cursor)
    docs = [_doc(p) for p in found]
    return View({"workflows": docs, "cursor": nxt, "total": total}, lambda: _table(found, nxt, total), items=docs)


def _func(p: Promise) -> str:
    return invocation_of(p.param)[0] or ""


def _doc(p: Promise) -> dict[str, Any]:
    doc = p.to_json()
    doc["func"] = _func(p) or None
    info = error_of(p)
    if info is not None:
        doc["error"] = info.to_json()
    return doc


def _table(found: list[Promise], cursor: str | None, total: int) -> None:
    table = Table(box=None, header_style="bold")
    for col in ("ID", "FUNCTION", "STATE", "STARTED", "TOOK", "RESULT / ERROR"):
        table.add_column(col, overflow="ellipsis", no_wrap=True)
    for p in found:
        info = error_of(p)
        if info is not None:
            outcome = f"[red]{escape(short(str(info), 60))}[/]"
        elif p.pending:
            outcome = ""
        else:
            outcome = escape(short(p.value.json(), 60))
        took = duration(p.completed_on - p.created_on) if p.completed_on else "-"
        table.add_row(escape(p.id), escape(_func(p)), state_text(p.state), when(p.created_on), took, outcome)
    if found:
        out.print(table)
    shown = f"{len(found)} of {total}" if total != len(found) else str(total)
    err.print(f"{shown} workflow{'s' if total != 1 else ''}" if found else "no workflows match", highlight=False)
    if cursor:
        err.print(f"more: --cursor {cursor}", highlight=False)


NO_WAIT = typer.Option(False, "--no-wait", help="Print the id and return; do not wait for the result.")
QUEUE = typer.Option(False, "--queue", help="Through a daemon: wait even if no connected worker has the function.")
APP = typer.Option(None, "--app", "-a", help=APP_HELP + " Runs it here (needed without a daemon).")


@output()
def retry(ctx: typer.Context,
          id: str = typer.Argument(..., help="The failed workflow's id."),
          app: str = APP, no_wait: bool = NO_WAIT, queue: bool = QUEUE) -> View:
    """Run a rejected, canceled or timed-out workflow again under the same id, and wait for its result.

    Every step that resolved keeps its result and does not run again; the step that failed, and every step
    after it, runs again (on the code the worker has now: fix the bug, restart the worker, retry). Refused
    while the workflow runs.

    Example: resonate retry order-7 --app app.py
    """
    return _act(ctx, id, app, no_wait, queue, lambda client: client.resonate.retry(id), "retry")


@output()
def fork(ctx: typer.Context,
         id: str = typer.Argument(..., help="The workflow to fork (it must have finished)."),
         from_step: int = typer.Option(..., "--from-step", min=0,
                                       help="Reuse the results of this many of its first steps (the numbers "
                                            "resonate steps shows); 0 runs it all again."),
         new_id: str = typer.Option(None, "--id", help="The new workflow's id (default: ID-fork-N)."),
         app: str = APP, no_wait: bool = NO_WAIT, queue: bool = QUEUE) -> View:
    """Start a new workflow with the same function and arguments as ID that reuses the results of its first N
    steps and runs the rest; wait for its result. The original stays as it is.

    Example: resonate fork order-7 --from-step 2 --id order-7b
    """
    return _act(ctx, id, app, no_wait, queue, lambda client: client.resonate.fork(id, from_step, new_id),
                f"fork --from-step {from_step}")


def _act(ctx: typer.Context, id: str, app: str | None, no_wait: bool, queue: bool, act: Any,
         act_name: str) -> View:
    module = import_app(app)
    with using(ctx, read=True) as client:  # what it is, and where its workers are, before acting on it
        root = client.resonate.promises.get(id)
        status = client.status() if client.daemon else None
    target = root.tags.get(TAG_INVOKE)
    func = _func(root)
    if target is None:
        top = root.tags.get(TAG_ROOT)
        if top and top != id:
            fail(f"{id!r} is a step of workflow {top!r}, not a workflow: resonate {act_name} {top}", exits.USAGE)
        fail(f"{id!r} is not a workflow (it was not invoked); see resonate workflows list", exits.USAGE)
    group = group_of(target)
    if status is None and module is None:
        fail(f"no daemon answers, so {func or id} would run here; pass --app with your code, or start one: "
             "resonate serve", exits.USAGE)
    if status is not None and module is None and func and not status.has_function(group, func):
        message = no_worker(status, group, func)
        if not (no_wait or queue):
            fail(message + "; start one (resonate worker APP --group GROUP), pass --app to run it here, or --queue "
                 "to wait for one", exits.NOT_FOUND, kind="NoWorker")
        if not json_mode():
            err.print(f"[yellow]note:[/] {message}; it waits until one connects", highlight=False)
    with using(ctx, app=module, worker_group=group if module is not None else None, quiet=True) as client:
        handle = act(client)
        if no_wait:
            if module is not None:  # this process runs it: until done or suspended, then we go
                client.resonate.wait_idle()
            promise = client.resonate.promises.get(handle.id)
            return View(promise.to_json(), lambda: print(handle.id))
        return _finish(client, handle, func or id, target)


def _finish(client: Client, handle: Any, func: str, target: str) -> View:
    if not json_mode():
        err.print(f"[dim]running {escape(handle.id)} ({escape(func)})[/]", highlight=False)
    return finish(client, handle, func, target)

