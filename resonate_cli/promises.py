"""``resonate promises ...``: list, inspect, create and complete durable promises (human in the loop)."""

from __future__ import annotations

import concurrent.futures
import sys
import time
from typing import Any

import typer
from resonate_daemon.records import REJECTED, REJECTED_CANCELED, RESOLVED, Promise
from rich.prompt import Confirm, Prompt
from rich.table import Table

from . import exits
from .backend import Backend, Target, open_backend
from .invoke import report
from .render import (
    data_json,
    emit_json,
    emit_lines,
    err,
    fail,
    is_human_wait,
    promise_detail,
    promise_table,
    short,
)
from .session import (
    APP_HELP,
    JSON_HELP,
    JSON_LINES_HELP,
    import_app,
    json_error,
    parse_duration,
    parse_tags,
    read_data,
    using,
)

app = typer.Typer(help="List, inspect, create and complete durable promises.", no_args_is_help=True)

DATA_HELP = "JSON text, @file, or - for stdin (validated as JSON before it is sent)."
COMPLETION_LIMIT = 50


def complete_id(ctx: typer.Context, incomplete: str) -> list[str]:
    """Promise ids for shell completion: bounded in time, silent on any error."""
    try:
        params = ctx.find_root().params
        target = Target(params.get("socket"), params.get("url"), params.get("token"), params.get("db"))
        backend = open_backend(target)
        try:
            found, _ = backend.resonate.promises.search(f"{incomplete}*", limit=COMPLETION_LIMIT)
            return [p.id for p in found]
        finally:
            backend.close()
    except Exception:
        return []


ID = typer.Argument(..., help="The promise id.", autocompletion=complete_id)


def _emit_list(promises: list[Promise], cursor: str | None, as_json: bool, json_lines: bool) -> None:
    if as_json:
        emit_json({"promises": [p.to_json() for p in promises], "cursor": cursor})
    elif json_lines:
        emit_lines(p.to_json() for p in promises)
    else:
        promise_table(promises, cursor)


def _search(ctx: typer.Context, id: str, state: str | None, tag: list[str] | None, limit: int, cursor: str | None,
            as_json: bool, json_lines: bool) -> None:
    if state and state.lower() not in ("pending", "resolved", "rejected"):
        fail(f"--state must be pending, resolved or rejected, not {state!r}", exits.USAGE, as_json=as_json)
    tags = parse_tags(tag)
    with using(ctx, as_json=as_json) as backend:
        found, nxt = backend.resonate.promises.search(id, state=state, tags=tags or None, limit=limit, cursor=cursor)
        _emit_list(found, nxt, as_json, json_lines)


STATE = typer.Option(None, "--state", "-s", help="pending, resolved or rejected.")
TAG = typer.Option(None, "--tag", "-t", help="Only promises with tag k=v (repeatable).")
LIMIT = typer.Option(50, "--limit", "-n", min=1, max=1000, help="At most this many (newest first).")
CURSOR = typer.Option(None, "--cursor", help="Continue from a previous page's cursor.")
JSON = typer.Option(False, "--json", help=JSON_HELP)
JSON_LINES = typer.Option(False, "--json-lines", help=JSON_LINES_HELP)


@app.command("list")
def list_(ctx: typer.Context, state: str = STATE,
          id: str = typer.Option("*", "--id", help="Id glob (* matches anything)."),
          tag: list[str] = TAG, limit: int = LIMIT, cursor: str = CURSOR, as_json: bool = JSON,
          json_lines: bool = JSON_LINES) -> None:
    """List promises, newest first.

    Example: resonate promises list --state pending --tag resonate:func=approve
    """
    _search(ctx, id, state, tag, limit, cursor, as_json, json_lines)


@app.command()
def search(ctx: typer.Context, id: str = typer.Argument("*", help="Id glob, e.g. 'order-*'."), state: str = STATE,
           tag: list[str] = TAG, limit: int = LIMIT, cursor: str = CURSOR, as_json: bool = JSON,
           json_lines: bool = JSON_LINES) -> None:
    """Search promises by id glob, state and tags.

    Example: resonate promises search 'order-*' --state pending --json
    """
    _search(ctx, id, state, tag, limit, cursor, as_json, json_lines)


@app.command()
def get(ctx: typer.Context, id: str = ID, as_json: bool = JSON) -> None:
    """Show one promise: state, param, value, tags, and who waits on it.

    Example: resonate promises get order-7.1
    """
    with using(ctx, as_json=as_json) as backend:
        promise = backend.resonate.promises.get(id)
        if as_json:
            emit_json(promise.to_json())
            return
        promise_detail(promise, backend.callbacks(id) if promise.pending else None)


@app.command()
def create(ctx: typer.Context, id: str = typer.Argument(..., help="The new promise's id."),
           timeout: str = typer.Option("1y", "--timeout", help="Relative timeout: 30s, 5m, 2h, 1d, 1y."),
           data: str = typer.Option(None, "--data", "-d", help=DATA_HELP),
           tag: list[str] = TAG,
           idempotency_key: str = typer.Option(None, "--idempotency-key", help="Default: the id."),
           strict: bool = typer.Option(False, "--strict", help="Strict idempotency (PROTOCOL.md): a completed promise is not reused."),
           as_json: bool = JSON) -> None:
    """Create a pending promise (for example one a person or script will resolve).

    Example: resonate promises create approval-7 --timeout 1d --data '{"order": 7}'
    """
    text = read_data(data, as_json=as_json)
    secs = parse_duration(timeout) or 0
    tags = parse_tags(tag)
    with using(ctx, as_json=as_json) as backend:
        deadline = time.time_ns() // 1_000_000 + int(secs * 1000)
        promise = backend.resonate.promises.create(id, deadline, ikey=idempotency_key or id, strict=strict,
                                                   data=text, tags=tags or None)
        if as_json:
            emit_json(promise.to_json())
        else:
            print(promise.id)


def _complete(ctx: typer.Context, state: str, id: str | None, data: str | None, ikey: str | None,
              as_json: bool, prompt: bool) -> None:
    verb = {RESOLVED: "resolve", REJECTED: "reject", REJECTED_CANCELED: "cancel"}[state]
    text = read_data(data, as_json=as_json)
    interactive = sys.stdin.isatty() and sys.stderr.isatty()
    if id is None and not interactive:
        fail(f"give the promise ID to {verb} (picking one needs a terminal)", exits.USAGE, as_json=as_json)
    if prompt and text is None and not interactive:
        fail(f"no --data given and no terminal to ask for it: pass --data JSON (or @file, or - for stdin) "
             f"to {verb}", exits.USAGE, as_json=as_json)
    with using(ctx, as_json=as_json) as backend:
        if id is None:
            id = pick(backend)
        if prompt and text is None:
            text = ask_value(backend, id, verb)
        status, promise = backend.transport.complete_promise(
            id, state, _encode(text), ikey, False)
        if promise.state != state:
            fail(f"{id} is already {promise.state}; nothing changed", exits.CONFLICT, as_json=as_json,
                 kind="AlreadyCompleted")
        if status == 200 and text is not None and data_json(promise.value) != data_json(_encode(text)):
            fail(f"{id} was already {promise.state} with another value; nothing changed", exits.CONFLICT,
                 as_json=as_json, kind="AlreadyCompleted")
        if as_json:
            emit_json(promise.to_json())
        else:
            again = " (it already was)" if status == 200 else ""
            done = {"resolve": "resolved", "reject": "rejected", "cancel": "canceled"}[verb]
            err.print(f"{done} {id}{again}", highlight=False)


def _encode(text: str | None) -> Any:
    from resonate.codec import encode_json_text

    return encode_json_text(text)


def pick(backend: Backend) -> str:
    """Let the person choose among pending promises that no function will complete (human waits)."""
    found, _ = backend.resonate.promises.search("*", state="pending", limit=200)
    waits = [p for p in found if is_human_wait(p)]
    if not waits:
        fail("no pending promise is waiting on a person (sleeps and function calls complete by themselves)",
             exits.NOT_FOUND)
    table = Table(box=None, header_style="bold", title="Pending promises waiting on a person")
    for col in ("#", "ID", "WAITED ON BY", "PARAM"):
        table.add_column(col)
    for n, p in enumerate(waits, 1):
        param = data_json(p.param)
        table.add_row(str(n), p.id, p.tags.get("resonate:root", "-"), short(param, 40) if param is not None else "")
    err.print(table)
    choices = [str(n) for n in range(1, len(waits) + 1)]
    answer = Prompt.ask("Which one", console=err, choices=choices + [p.id for p in waits], show_choices=False,
                        default="1" if len(waits) == 1 else None)
    return waits[int(answer) - 1].id if answer in choices else answer


def ask_value(backend: Backend, id: str, verb: str) -> str:
    """Show the promise, then ask for JSON until it parses, then confirm."""
    promise = backend.resonate.promises.get(id)
    promise_detail(promise, backend.callbacks(id) if promise.pending else None)
    while True:
        text = Prompt.ask(f"Value to {verb} {id} with (JSON)", console=err)
        error = json_error(text)
        if error:
            err.print(f"[red]not valid JSON:[/] {error}; try again (e.g. {{\"approved\": true}})")
            continue
        if Confirm.ask(f"{verb.capitalize()} {id} with {text.strip()}?", console=err, default=True):
            return text.strip()


@app.command()
def resolve(ctx: typer.Context,
            id: str = typer.Argument(None, help="The promise id (in a terminal: omit it to pick one).",
                                     autocompletion=complete_id),
            data: str = typer.Option(None, "--data", "-d", help=DATA_HELP),
            idempotency_key: str = typer.Option(None, "--idempotency-key", help="Makes retries safe."),
            as_json: bool = JSON) -> None:
    """Resolve a pending promise with a JSON value; a waiting function continues.

    Example: resonate promises resolve order-7.1 --data '{"approved": true}'
    """
    _complete(ctx, RESOLVED, id, data, idempotency_key, as_json, prompt=True)


@app.command()
def reject(ctx: typer.Context,
           id: str = typer.Argument(None, help="The promise id (in a terminal: omit it to pick one).",
                                    autocompletion=complete_id),
           data: str = typer.Option(None, "--data", "-d", help=DATA_HELP),
           idempotency_key: str = typer.Option(None, "--idempotency-key", help="Makes retries safe."),
           as_json: bool = JSON) -> None:
    """Reject a pending promise; a waiting function sees an error.

    Example: resonate promises reject order-7.1 --data '{"__error__": "out of stock"}'
    """
    _complete(ctx, REJECTED, id, data, idempotency_key, as_json, prompt=True)


@app.command()
def cancel(ctx: typer.Context, id: str = ID,
           data: str = typer.Option(None, "--data", "-d", help=DATA_HELP),
           idempotency_key: str = typer.Option(None, "--idempotency-key", help="Makes retries safe."),
           tree: bool = typer.Option(False, "--tree", help="Also cancel every pending promise below it."),
           as_json: bool = JSON) -> None:
    """Cancel a pending promise; the function waiting on it sees PromiseCanceled.

    Example: resonate promises cancel order-7 --tree
    """
    if not tree:
        _complete(ctx, REJECTED_CANCELED, id, data, idempotency_key, as_json, prompt=False)
        return
    text = read_data(data, as_json=as_json)
    with using(ctx, as_json=as_json) as backend:
        promise = backend.resonate.promises.get(id)
        if promise.pending:  # a tree cancel may be run again to finish: a completed top is left as it is
            promise = backend.transport.complete_promise(id, REJECTED_CANCELED, _encode(text), idempotency_key,
                                                         False)[1]
        below = backend.resonate.promises.cancel_below(id)
    if as_json:
        emit_json({"promise": promise.to_json(), "canceled": below})
    else:
        err.print(f"{id} is {promise.state}; canceled {len(below)} pending promise(s) below it", highlight=False)


@app.command()
def wait(ctx: typer.Context, id: str = ID,
         timeout: str = typer.Option(None, "--timeout", help="Give up after this long (30s, 5m); exit 6."),
         app_spec: str = typer.Option(None, "--app", "-a", help=APP_HELP + " Embedded: runs pending work here."),
         as_json: bool = JSON) -> None:
    """Block until a promise completes; print its value. Exit 0 resolved, 7 rejected/canceled, 6 timed out.

    Example: resonate promises wait order-7 --timeout 5m
    """
    secs = parse_duration(timeout)
    module = import_app(app_spec, as_json=as_json)
    with using(ctx, as_json=as_json, app=module) as backend:
        promise = backend.resonate.promises.get(id)
        if promise.pending:
            if not backend.daemon and module is None:
                fail(f"{id} is pending and no daemon answers at {backend.target.socket_path}: embedded, nothing "
                     "can complete it while this command holds the database. Start `resonate serve`, or pass "
                     "--app to run the pending work here.", exits.UNREACHABLE, as_json=as_json)
            handle = backend.resonate.get(id)
            done, _ = concurrent.futures.wait([handle.future], timeout=secs)
            if not done:
                fail(f"{id} is still pending after {timeout}", exits.TIMED_OUT, as_json=as_json,
                     kind="TimeoutError")
            promise = backend.resonate.promises.get(id)
        report(promise, as_json)
