"""Human output: rich tables of promises and states (``resonate.render`` has the plain text both the CLI and
the browser UI use; ``output`` has the JSON side)."""

from __future__ import annotations

import json

from resonate_daemon.protocol.records import TAG_FUNC, Callback, Promise
from rich.markup import escape
from rich.table import Table

from resonate import codec
from resonate.render import data_json, duration, error_of, kind_of, short, when

from .output import err, out

STATE_STYLE = {"PENDING": "yellow", "RESOLVED": "green", "REJECTED": "red", "REJECTED_CANCELED": "magenta",
               "REJECTED_TIMEDOUT": "red"}


def print_error(info: codec.ErrorInfo, *, traceback: bool = True) -> None:
    """``KeyError: 'reviewer'`` and, dimmed, the traceback where it was raised."""
    if traceback and info.traceback:
        err.print(f"[dim]{escape(info.traceback.rstrip())}[/]", highlight=False)


def state_text(state: str) -> str:
    return f"[{STATE_STYLE.get(state, 'white')}]{state}[/]"


# -- promises -----------------------------------------------------------------------------------

def promise_table(promises: list[Promise], cursor: str | None = None) -> None:
    table = Table(box=None, header_style="bold")
    id_width = min(max([len(p.id) for p in promises] + [2]), 48)
    for col in ("ID", "STATE", "KIND", "FUNCTION", "CREATED", "TIMEOUT / DONE", "VALUE"):
        table.add_column(col, overflow="ellipsis", no_wrap=True,
                         min_width={"ID": id_width, "STATE": 8, "KIND": 7}.get(col, 4))
    for p in promises:
        done = when(p.completed_on) if p.completed_on else when(p.timeout)
        value = data_json(p.value) if not p.pending else None
        table.add_row(escape(p.id), state_text(p.state), kind_of(p), escape(p.tags.get(TAG_FUNC, "")),
                      when(p.created_on), done, escape(short(value, 40)) if value is not None else "")
    out.print(table)
    if not promises:
        err.print("no promises match")
    if cursor:
        err.print(f"more: --cursor {cursor}", highlight=False)


def promise_detail(p: Promise, callbacks: list[Callback] | None = None) -> None:
    table = Table(box=None, show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("id", escape(p.id))
    table.add_row("state", state_text(p.state))
    table.add_row("kind", kind_of(p))
    table.add_row("created", when(p.created_on))
    table.add_row("timeout", when(p.timeout))
    if p.completed_on:
        table.add_row("completed", f"{when(p.completed_on)} (took {duration(p.completed_on - p.created_on)})")
    param = data_json(p.param)
    if param is not None:
        table.add_row("param", escape(json.dumps(param, indent=2) if not isinstance(param, str) else param))
    info = error_of(p)
    if info is not None:
        table.add_row("error", f"[red]{escape(str(info))}[/]")
        if info.traceback:
            table.add_row("traceback", f"[dim]{escape(info.traceback.rstrip())}[/]")
    elif not p.pending:
        value = data_json(p.value)
        table.add_row("value", escape(json.dumps(value, indent=2) if not isinstance(value, str) else value))
    for k, v in sorted(p.tags.items()):
        table.add_row(f"tag {escape(k)}", escape(v))
    if callbacks is not None:
        if callbacks:
            for cb in callbacks:
                who = "execution" if cb.kind == "resume" else "caller"
                table.add_row("waiting", f"{who} {escape(cb.root_promise_id or cb.id)}")
        elif p.pending:
            table.add_row("waiting", "nobody is waiting on it yet")
    out.print(table)
