"""``resonate promises ...``: list, inspect, create and complete durable promises (human in the loop)."""

from __future__ import annotations

import concurrent.futures
import hashlib
import sys
import time

import typer
from resonate_daemon.protocol.records import (
    REJECTED,
    REJECTED_CANCELED,
    RESOLVED,
    TAG_INVOKE,
    TAG_ROOT,
    Promise,
)
from rich.prompt import Confirm, Prompt
from rich.table import Table

from resonate.promises import STATES
from resonate.render import data_json, is_human_wait, promise_doc, short

from . import exits
from .client import Client, Target, open_client
from .invoke import report
from .output import View, err, fail, output
from .render import promise_detail, promise_table
from .session import APP_HELP, import_app, json_error, parse_duration, parse_tags, read_data, using

app = typer.Typer(help="List, inspect, create and complete durable promises.", no_args_is_help=True)

DATA_HELP = "JSON text, @file, or - for stdin (validated as JSON before it is sent)."
COMPLETION_LIMIT = 50
VERBS = {RESOLVED: "resolve", REJECTED: "reject", REJECTED_CANCELED: "cancel"}
DONE = {RESOLVED: "resolved", REJECTED: "rejected", REJECTED_CANCELED: "canceled"}


def complete_id(ctx: typer.Context, incomplete: str) -> list[str]:
    """Promise ids for shell completion: bounded in time, silent on any error."""
    try:
        params = ctx.find_root().params
        target = Target(params.get("socket"), params.get("url"), params.get("token"), params.get("db"))
        client = open_client(target)
        try:
            found, _ = client.resonate.promises.search(f"{incomplete}*", limit=COMPLETION_LIMIT)
            return [p.id for p in found]
        finally:
            client.close()
    except Exception:
        return []


ID = typer.Argument(..., help="The promise id.", autocompletion=complete_id)
STATE = typer.Option(None, "--state", "-s",
                     help="pending, resolved or rejected (rejected includes canceled and timed out).")
TAG = typer.Option(None, "--tag", "-t", help="Only promises with tag k=v (repeatable).")
LIMIT = typer.Option(50, "--limit", "-n", min=1, max=1000, help="At most this many (newest first).")
CURSOR = typer.Option(None, "--cursor", help="Continue from a previous page's cursor.")
FORCE = typer.Option(False, "--force", help="Complete it even if a function is computing it (a workflow, an rpc).")
IKEY = typer.Option(None, "--idempotency-key",
                    help="Makes retries safe (default: one derived from the state and the data, so repeating "
                         "the same completion is answered 'already', and a different one is a conflict).")


def _search(ctx: typer.Context, id: str, state: str | None, tag: list[str] | None, limit: int,
            cursor: str | None) -> View:
    if state and state.lower() not in STATES:
        fail(f"--state must be {', '.join(STATES)}, not {state!r}", exits.USAGE)
    tags = parse_tags(tag)
    with using(ctx, read=True) as client:
        found, nxt = client.resonate.promises.search(id, state=state, tags=tags or None, limit=limit, cursor=cursor)
    return View({"promises": [p.to_json() for p in found], "cursor": nxt}, lambda: promise_table(found, nxt),
                items=[p.to_json() for p in found])


@app.command("list")
@output(lines=True)
def list_(ctx: typer.Context, state: str = STATE,
          id: str = typer.Option("*", "--id", help="Id glob (* matches anything)."),
          tag: list[str] = TAG, limit: int = LIMIT, cursor: str = CURSOR) -> View:
    """List promises, newest first.

    Example: resonate promises list --state pending --tag resonate:func=approve
    """
    return _search(ctx, id, state, tag, limit, cursor)


@app.command()
@output(lines=True)
def search(ctx: typer.Context, id: str = typer.Argument("*", help="Id glob, e.g. 'order-*'."), state: str = STATE,
           tag: list[str] = TAG, limit: int = LIMIT, cursor: str = CURSOR) -> View:
    """Search promises by id glob, state and tags.

    Example: resonate promises search 'order-*' --state pending --json
    """
    return _search(ctx, id, state, tag, limit, cursor)


@app.command()
@output()
def get(ctx: typer.Context, id: str = ID) -> View:
    """Show one promise: state, param, value, tags, and who waits on it.

    Example: resonate promises get order-7.1
    """
    with using(ctx, read=True) as client:
        promise = client.resonate.promises.get(id)
        callbacks = client.resonate.promises.callbacks(id) if promise.pending else None
    return View(promise_doc(promise), lambda: promise_detail(promise, callbacks))


@app.command()
@output()
def create(ctx: typer.Context, id: str = typer.Argument(..., help="The new promise's id."),
           timeout: str = typer.Option("1y", "--timeout", help="Relative timeout: 30s, 5m, 2h, 1d, 1y."),
           data: str = typer.Option(None, "--data", "-d", help=DATA_HELP),
           tag: list[str] = typer.Option(None, "--tag", "-t", help="A tag k=v to put on it (repeatable)."),
           idempotency_key: str = typer.Option(None, "--idempotency-key", help="Default: the id."),
           strict: bool = typer.Option(False, "--strict", help="Strict idempotency: a completed promise is not reused.")
           ) -> View:
    """Create a pending promise (for example one a person or script will resolve).

    Example: resonate promises create approval-7 --timeout 1d --data '{"order": 7}'
    """
    text = read_data(data)
    secs = parse_duration(timeout) or 0
    tags = parse_tags(tag)
    with using(ctx) as client:
        deadline = time.time_ns() // 1_000_000 + int(secs * 1000)
        promise = client.resonate.promises.create(id, deadline, ikey=idempotency_key or id, strict=strict,
                                                  data=text, tags=tags or None)
    return View(promise.to_json(), lambda: print(promise.id))


def default_ikey(state: str, text: str | None) -> str:
    """The same completion (state and data) gets the same key: repeating it is answered 200 'already'."""
    digest = hashlib.sha256(f"{state}\n{text or ''}".encode()).hexdigest()[:24]
    return f"resonate-cli:{digest}"


def _complete(ctx: typer.Context, state: str, id: str | None, data: str | None, ikey: str | None,
              prompt: bool, force: bool = True) -> View:
    verb = VERBS[state]
    text = read_data(data)
    interactive = sys.stdin.isatty() and sys.stderr.isatty()
    if id is None and not interactive:
        fail(f"give the promise ID to {verb} (picking one needs a terminal)", exits.USAGE)
    if prompt and text is None and not interactive:
        fail(f"no --data given and no terminal to ask for it: pass --data JSON (or @file, or - for stdin) "
             f"to {verb}", exits.USAGE)
    with using(ctx) as client:
        if id is None:
            id = pick(client)
        if not force:
            _not_a_running_function(client, id, verb)
        if prompt and text is None:
            text = ask_value(client, id, verb)
        # Strict: a promise completed otherwise (or timed out) is a conflict the store reports (exit 5).
        done = client.resonate.promises.complete(id, state, ikey=ikey or default_ikey(state, text), strict=True,
                                                 data=text)
    again = " (it already was)" if done.status == 200 else ""
    return View(done.promise.to_json(), lambda: err.print(f"{DONE[state]} {id}{again}", highlight=False))


def _not_a_running_function(client: Client, id: str, verb: str) -> None:
    """Refuse to complete by hand a promise a function is computing (a workflow, an rpc), which is
    almost always a mistake for the promise it waits on; name those."""
    promise = client.resonate.promises.get(id)
    if not promise.pending or TAG_INVOKE not in promise.tags:
        return
    waits = [p.id for p in client.resonate.promises.tree(id, limit=1000).promises if is_human_wait(p)]
    hint = f"; it waits on {', '.join(waits[:5])}: {verb} that instead" if waits else ""
    fail(f"{id} is a running function (resonate:invoke), not a promise waiting on a person{hint}. To end it "
         f"by hand anyway, pass --force (or cancel it: resonate promises cancel {id} --tree)", exits.USAGE)


def pick(client: Client) -> str:
    """Let the person choose among pending promises that no function will complete (human waits)."""
    found, _ = client.resonate.promises.search("*", state="pending", limit=200)
    waits = [p for p in found if is_human_wait(p)]
    if not waits:
        fail("no pending promise is waiting on a person (sleeps and function calls complete by themselves)",
             exits.NOT_FOUND)
    table = Table(box=None, header_style="bold", title="Pending promises waiting on a person")
    for col in ("#", "ID", "WAITED ON BY", "PARAM"):
        table.add_column(col)
    for n, p in enumerate(waits, 1):
        param = data_json(p.param)
        table.add_row(str(n), p.id, p.tags.get(TAG_ROOT, "-"), short(param, 40) if param is not None else "")
    err.print(table)
    choices = [str(n) for n in range(1, len(waits) + 1)]
    answer = Prompt.ask("Which one", console=err, choices=choices + [p.id for p in waits], show_choices=False,
                        default="1" if len(waits) == 1 else None) or ""
    return waits[int(answer) - 1].id if answer in choices else answer


def ask_value(client: Client, id: str, verb: str) -> str:
    """Show the promise, then ask for JSON until it parses, then confirm."""
    promise = client.resonate.promises.get(id)
    promise_detail(promise, client.resonate.promises.callbacks(id) if promise.pending else None)
    while True:
        text = Prompt.ask(f"Value to {verb} {id} with (JSON)", console=err)
        error = json_error(text)
        if error:
            err.print(f"[red]not valid JSON:[/] {error}; try again (e.g. {{\"approved\": true}})")
            continue
        if Confirm.ask(f"{verb.capitalize()} {id} with {text.strip()}?", console=err, default=True):
            return text.strip()


@app.command()
@output()
def resolve(ctx: typer.Context,
            id: str = typer.Argument(None, help="The promise id (in a terminal: omit it to pick one).",
                                     autocompletion=complete_id),
            data: str = typer.Option(None, "--data", "-d", help=DATA_HELP), idempotency_key: str = IKEY,
            force: bool = FORCE) -> View:
    """Resolve a pending promise with a JSON value; a waiting function continues.

    Example: resonate promises resolve order-7.1 --data '{"approved": true}'
    """
    return _complete(ctx, RESOLVED, id, data, idempotency_key, prompt=True, force=force)


@app.command()
@output()
def reject(ctx: typer.Context,
           id: str = typer.Argument(None, help="The promise id (in a terminal: omit it to pick one).",
                                    autocompletion=complete_id),
           data: str = typer.Option(None, "--data", "-d", help=DATA_HELP), idempotency_key: str = IKEY,
           force: bool = FORCE) -> View:
    """Reject a pending promise; a waiting function sees an error.

    Example: resonate promises reject order-7.1 --data '{"__error__": "out of stock"}'
    """
    return _complete(ctx, REJECTED, id, data, idempotency_key, prompt=True, force=force)


@app.command()
@output()
def cancel(ctx: typer.Context, id: str = ID, data: str = typer.Option(None, "--data", "-d", help=DATA_HELP),
           idempotency_key: str = IKEY,
           tree: bool = typer.Option(False, "--tree", help="Also cancel every pending promise below it.")) -> View:
    """Cancel a pending promise; the function waiting on it sees PromiseCanceled.

    Example: resonate promises cancel order-7 --tree
    """
    if not tree:
        return _complete(ctx, REJECTED_CANCELED, id, data, idempotency_key, prompt=False)
    text = read_data(data)
    with using(ctx) as client:
        promise, below = client.resonate.promises.cancel_tree(id, ikey=idempotency_key, data=text)
    return View({"promise": promise.to_json(), "canceled": below}, lambda: err.print(
        f"{id} is {promise.state}; canceled {len(below)} pending promise(s) below it", highlight=False))


@app.command()
@output()
def wait(ctx: typer.Context, id: str = ID,
         timeout: str = typer.Option(None, "--timeout", help="Give up after this long (30s, 5m); exit 6."),
         app_spec: str = typer.Option(None, "--app", "-a", help=APP_HELP + " Embedded: runs pending work here.")
         ) -> View:
    """Block until a promise completes; print its value. Exit 0 resolved, 7 rejected/canceled, 6 timed out.

    Example: resonate promises wait order-7 --timeout 5m
    """
    secs = parse_duration(timeout)
    module = import_app(app_spec)
    with using(ctx, app=module) as client:
        promise: Promise = client.resonate.promises.get(id)
        if promise.pending:
            if not client.daemon and module is None:
                fail(f"{id} is pending and no daemon answers at {client.target.socket_path}: embedded, nothing "
                     "can complete it while this command holds the database. Start `resonate serve`, or pass "
                     "--app to run the pending work here.", exits.UNREACHABLE)
            handle = client.resonate.get(id)
            done, _ = concurrent.futures.wait([handle.future], timeout=secs)
            if not done:
                fail(f"{id} is still pending after {timeout}", exits.TIMED_OUT, kind="TimeoutError")
            promise = client.resonate.promises.get(id)
    return report(promise)
