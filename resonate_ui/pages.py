"""What each page shows, as plain data for its template: the rows of the workflows list, one workflow's
history (``resonate.history``, as ``resonate steps`` and ``tree`` show it, plus what a fork reused), and a
page of the promises waiting for a person.

Nothing here knows HTTP: ``app`` reads the request, calls these, and renders.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from resonate_daemon.errors import PromiseNotFound
from resonate_daemon.protocol.records import TAG_INVOKE, TAG_PARENT, TAG_ROOT, Promise, encode_cursor
from resonate_daemon.protocol.results import Page

from resonate.history import Step, steps_of
from resonate.promises import Promises
from resonate.render import error_of, invocation, is_human_wait, value_text

TAG_FORKED_FROM = "resonate:forked-from"  # the engine's (daemon/core/workflows.py): "ID@N" on a fork's root
TREE_LIMIT = 5000  # promises of one call graph shown (as resonate tree)
WAIT_PAGE = 20  # promises waiting for a person, a page
WAIT_BATCH = 500  # pending promises read from the store at a time while filling a page of those
WAIT_SCAN = 20_000  # pending promises looked at for one page at most: past that, a short page and a next link

Search = Callable[[str | None, int], Awaitable[Page[Promise]]]  # (cursor, limit) -> one page of pending promises


def workflow_row(p: Promise, now: int) -> dict[str, Any]:
    """One line of the workflows list."""
    func, _ = invocation(p)
    end = p.completed_on if p.completed_on is not None else now
    return {"id": p.id, "func": func, "state": p.state, "started": p.created_on, "took": max(0, end - p.created_on),
            "error": error_of(p)}


def is_workflow(p: Promise) -> bool:
    """A root the list shows: it runs a function and nothing called it."""
    return TAG_INVOKE in p.tags and TAG_PARENT not in p.tags


def forked_from(root: Promise) -> tuple[str, int] | None:
    """The workflow a fork was made from and how many of its steps it reused, or None."""
    origin, _, n = root.tags.get(TAG_FORKED_FROM, "").rpartition("@")
    return (origin, int(n)) if origin and n.isdigit() else None


def workflow(promises: Promises, id: str, now: int) -> dict[str, Any] | None:
    """One workflow's page (or one step's, when ``id`` is a step), or None when there is no such promise."""
    try:
        tree = promises.tree(id, limit=TREE_LIMIT)
    except PromiseNotFound:
        return None
    steps = steps_of(tree)
    root = steps[0].promise
    func, args = invocation(root) if TAG_INVOKE in root.tags else (steps[0].func, "")
    start = min((s.started for s in steps if s.started), default=root.created_on)
    end = max([s.ended or now for s in steps] + [start + 1])
    fork = forked_from(root)
    return {"root": root, "func": func, "args": args, "result": value_text(root.value) if root.state == "RESOLVED" else "",
            "error_info": error_of(root), "steps": [_step(s, start, end, now, fork) for s in steps],
            "truncated": tree.truncated, "workflow_root": root.tags.get(TAG_ROOT, root.id),
            "is_workflow": is_workflow(root), "forked_from": fork,
            "top_steps": sum(1 for s in steps if s.depth == 1)}


def _step(s: Step, start: int, end: int, now: int, fork: tuple[str, int] | None) -> dict[str, Any]:
    span = max(1, end - start)
    began = s.started or s.promise.created_on
    stop = s.ended if s.ended is not None else now
    top = s.number.split(".")[0]
    reused = fork is not None and top.isdigit() and int(top) <= fork[1]  # copied from the original, not run
    return {"s": s, "p": s.promise, "value": "" if s.promise.pending or s.error else value_text(s.promise.value),
            "left": round(100 * (began - start) / span, 2), "width": max(0.5, round(100 * (stop - began) / span, 2)),
            "human": is_human_wait(s.promise), "reused": reused}


async def waiting(search: Search, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """One page of pending promises waiting for a person (``ctx.promise()``), newest first, and the cursor
    of the next page (None: no more).

    The store cannot tell a person's promise from a step's by SQL, so this reads pending promises in
    batches and keeps the person's, until it has a full page and knows one more exists; the next cursor
    points just after the last one shown, so nothing is skipped or shown twice. After ``WAIT_SCAN`` pending
    promises without a full page it stops with what it has and a cursor where it stopped (a daemon with
    100,000 sleeping steps answers quickly; the next link reads on)."""
    shown: list[Promise] = []
    scanned = 0
    while True:
        page = await search(cursor, WAIT_BATCH)
        for p in page.items:
            if not is_human_wait(p):
                continue
            if len(shown) == WAIT_PAGE:  # one more exists: the next page starts after the last shown
                return cards(shown), encode_cursor((shown[-1].created_on, shown[-1].id))
            shown.append(p)
        scanned += len(page.items)
        cursor = page.cursor
        if cursor is None:
            return cards(shown), None
        if scanned >= WAIT_SCAN:
            return cards(shown), cursor


def cards(found: list[Promise]) -> list[dict[str, Any]]:
    """The waiting page's cards: each promise, its question as JSON text, the workflow it belongs to."""
    return [{"p": p, "question": value_text(p.param), "root": p.tags.get(TAG_ROOT, "")} for p in found]
