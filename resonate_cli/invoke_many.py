"""``resonate invoke FUNC --from-file FILE``: start thousands of executions from the shell.

FILE (or ``-`` for stdin) has one execution per line, JSON: an array of positional arguments, an object
``{"id", "args", "kwargs"}`` (each optional), or one plain value (the only argument), so that
``seq 1000 | resonate invoke double --from-file -`` works. Every line is checked before anything starts:
a bad line or a repeated id stops it all, naming the line, with nothing stored.

The starts go through the SDK's batched starter (``begin_rpc``: a few requests for thousands of starts).
Then it waits for every result (or, with ``--no-wait``, returns once every start is stored) and prints
one line per execution, ``ID<TAB>RESULT``, or with ``--json`` one document; the summary goes to stderr.
The exit code is 0 when every execution resolved, else the highest code among the outcomes (7 rejected
or canceled, 6 timed out, 5 a conflict on an id).
"""

from __future__ import annotations

import json
import secrets
import sys
from typing import Any

from resonate_daemon.protocol.records import Promise

from resonate.errors import EncodingError, InvalidRequest, PromiseAlreadyExists, ResonateError, Unreachable

from . import exits
from .client import Client
from .output import View, err, fail, json_mode

KEYS = {"id", "args", "kwargs"}
# What a start itself can fail with (a handle done with another error is an execution that already ended)
START_ERRORS = (PromiseAlreadyExists, Unreachable, InvalidRequest, EncodingError)


def read_lines(path: str) -> list[str]:
    try:
        if path == "-":
            return sys.stdin.read().splitlines()
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()
    except OSError as exc:
        fail(f"cannot read {path!r}: {exc.strerror or exc}", exits.USAGE)
    except UnicodeDecodeError:
        fail(f"{path!r} is not UTF-8 text (one JSON value per line)", exits.USAGE)


def parse(lines: list[str], func: str, path: str) -> list[tuple[str, list[Any], dict[str, Any]]]:
    """(id, args, kwargs) per non-empty line; a usage error naming the first bad line."""
    batch = secrets.token_hex(3)
    out: list[tuple[str, list[Any], dict[str, Any]]] = []
    seen: dict[str, int] = {}
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            doc = json.loads(line)
        except ValueError as exc:
            fail(f"{where}: not JSON ({exc}); each line is an array of arguments, "
                 '{"id", "args", "kwargs"}, or one value', exits.USAGE)
        id, args, kwargs = None, [doc], {}
        if isinstance(doc, list):
            args = doc
        elif isinstance(doc, dict):
            unknown = sorted(set(doc) - KEYS)
            if unknown:
                fail(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; an object line has "
                     '"id", "args" (an array) and "kwargs" (an object)', exits.USAGE)
            id, args, kwargs = doc.get("id"), doc.get("args", []), doc.get("kwargs", {})
            if id is not None and (not isinstance(id, str) or not id):
                fail(f"{where}: \"id\" must be a non-empty string", exits.USAGE)
            if not isinstance(args, list) or not isinstance(kwargs, dict):
                fail(f"{where}: \"args\" must be an array and \"kwargs\" an object", exits.USAGE)
        id = id or f"{func}-{batch}-{n}"
        if id in seen:
            fail(f"{where}: id {id!r} is also on line {seen[id]}; each execution needs its own", exits.USAGE)
        seen[id] = n
        out.append((id, args, kwargs))
    if not out:
        fail(f"{path}: no executions in it (one JSON value per line)", exits.USAGE)
    return out


def invoke_many(client: Client, func: str, path: str, opts: dict[str, Any], no_wait: bool) -> View:
    starts = parse(read_lines(path), func, "stdin" if path == "-" else path)
    target = client.resonate.options(**opts)
    handles = []
    for id, args, kwargs in starts:
        try:
            handles.append(target.begin_rpc(id, func, *args, **kwargs))
        except (TypeError, ResonateError) as bad:  # this process knows FUNC and the arguments do not fit
            fail(f"{id}: {bad}; nothing after it was started ({len(handles)} were)", exits.USAGE,
                 kind=type(bad).__name__)
    ids = [h.id for h in handles]
    if no_wait:
        client.resonate.promises.get(ids[-1])  # returns once every start before it is stored
        failed_starts = [(h.id, h.future.exception()) for h in handles
                         if h.done() and isinstance(h.future.exception(), START_ERRORS)]
        for id, problem in failed_starts:
            err.print(f"[red]{id}[/]: {problem}", highlight=False)
        code = max((exits.code_for(e) for _, e in failed_starts if e is not None), default=exits.OK)
        doc = {"started": len(ids) - len(failed_starts), "failed": len(failed_starts), "ids": ids}
        return View(doc, lambda: print("\n".join(ids)), exit=code)
    results: list[dict[str, Any]] = []
    worst = exits.OK
    for h in handles:
        error = h.future.exception()  # blocks until done; never raises the execution's error
        promise: Promise | None = None
        if not isinstance(error, PromiseAlreadyExists):  # else its id is another execution's: not ours to show
            try:
                promise = client.resonate.promises.get(h.id)
            except ResonateError:
                promise = None
        if promise is not None and not promise.pending:
            state = promise.state
            code = exits.code_for_state(state)
            value = promise.value.json()
        else:  # the start itself failed (a conflict on the id, the daemon gone)
            state, value = "NOT_STARTED", {"error": str(error)}
            code = exits.code_for(error) if error is not None else exits.ERROR
        worst = max(worst, code)
        results.append({"id": h.id, "state": state, "result": value})
    resolved = sum(r["state"] == "RESOLVED" for r in results)

    def human() -> None:
        for r in results:
            line = f"{r['id']}\t{json.dumps(r['result'])}"
            if r["state"] == "RESOLVED":
                print(line)
            else:
                err.print(f"[red]{r['id']}[/] {r['state'].lower()}: {json.dumps(r['result'])[:200]}", highlight=False)
        if not json_mode():
            err.print(f"{len(results)} executions: {resolved} resolved, {len(results) - resolved} not", highlight=False)

    return View({"executions": len(results), "resolved": resolved, "results": results}, human, exit=worst)
