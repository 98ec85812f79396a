"""``resonate tree ID --follow``: the call graph redrawn as it changes, until the workflow completes.

Woken by the store's change events for this graph (``Promises.watch``: the daemon's watch stream, or the
engine in this process), it reads the tree again on each and compares it with the last one read: a step
that appeared, finished, or changed what it is doing (running on a worker, retrying) is an event. People
see the tree redrawn in place (or, piped, one line per event); ``--json-lines`` streams the events;
``--json`` prints the final tree. A refresh at least every second keeps running durations moving.
"""

from __future__ import annotations

import sys
import threading
from contextlib import nullcontext
from typing import Any

import typer
from rich.live import Live
from rich.markup import escape

from resonate.history import Step, steps_of, took_text
from resonate.render import now_ms, when

from . import exits
from .client import Client
from .history import rich_tree, tree_json
from .output import MODE, View, emit_lines, err, out
from .render import state_text

REFRESH_S = 1.0  # the longest the view goes without reading the tree again (durations, lazy timeouts)


def event_of(kind: str, step: Step) -> dict[str, Any]:
    doc = {"event": kind, "at": now_ms(), **step.to_json()}
    doc.pop("depth", None)
    return doc


def changes(seen: dict[str, Step], steps: list[Step]) -> list[dict[str, Any]]:
    """What happened between two reads of the tree: steps that started, finished, or changed what they do,
    in the order they happened (one read can see a step end and the next one start)."""
    keyed: list[tuple[tuple[int, int, int], dict[str, Any]]] = []
    # Within one millisecond the tree's order decides: a call starts before the steps it makes (its place
    # in the tree), and ends after all of them (after the last step below it), so a step's end comes
    # before the start of the step after it.
    last_below = list(range(len(steps)))
    for i in range(len(steps) - 1, -1, -1):
        j = i + 1
        while j < len(steps) and steps[j].depth > steps[i].depth:
            last_below[i] = max(last_below[i], last_below[j])
            j = last_below[j] + 1
    position = {id(step): i for i, step in enumerate(steps)}

    def add(kind: str, step: Step, at: int | None) -> None:
        i = position[id(step)]
        if kind == "completed":
            key = (at or 0, 2 * last_below[i] + 1, -step.depth)
        else:
            key = (at or 0, 2 * i, step.depth)
        keyed.append((key, event_of(kind, step)))

    for step in steps:
        before = seen.get(step.promise.id)
        if before is None:
            add("started", step, step.started)
            if not step.promise.pending:
                add("completed", step, step.ended)
        elif before.promise.pending and not step.promise.pending:
            add("completed", step, step.ended)
        elif step.promise.pending and (step.note, step.attempts) != (before.note, before.attempts):
            add("updated", step, now_ms())
    keyed.sort(key=lambda k: k[0])
    return [e for _, e in keyed]


def line_of(event: dict[str, Any], step: Step) -> str:
    """One event for people, when the output is not a terminal to redraw: time, what, which step."""
    what = f"{event['event']:<9}"
    name = f"{escape(step.func)} " if step.func else ""
    number = f"#{step.number} " if step.number else ""
    tail = ""
    if event["event"] == "completed":
        tail = f" {state_text(step.promise.state)} ({took_text(step)})"
        if step.error is not None:
            tail += f" [red]{escape(str(step.error))}[/]"
    elif step.note:
        tail = f" [yellow]{escape(step.note)}[/]"
    return f"[dim]{when(event['at'])}[/] {what} {number}{name}[dim]{escape(step.promise.id)}[/]{tail}"


def follow(client: Client, id: str, limit: int) -> View:
    changed = threading.Event()
    stop = client.resonate.promises.watch(id, changed.set)
    mode = MODE.get()
    redraw = mode == "human" and out.is_terminal
    seen: dict[str, Step] = {}
    steps: list[Step] = []
    try:
        with Live(console=out, auto_refresh=False, transient=False) if redraw else nullcontext() as live:
            while True:
                changed.clear()
                found = client.resonate.promises.tree(id, limit=limit)
                steps = steps_of(found)
                events = changes(seen, steps)
                seen_before = bool(seen)
                seen = {s.promise.id: s for s in steps}
                if mode == "lines":
                    emit_lines(events)
                elif live is not None:
                    live.update(rich_tree(steps), refresh=True)
                elif mode == "human" and not seen_before and not steps[0].promise.pending:
                    out.print(rich_tree(steps))  # already over: the tree, not a replay of its history
                elif mode == "human":
                    for event in events:
                        out.print(line_of(event, seen[event["id"]]), highlight=False)
                    sys.stdout.flush()
                if not steps[0].promise.pending:
                    break
                changed.wait(REFRESH_S)
    except KeyboardInterrupt:
        err.print(f"stopped following; {id} goes on")
        raise typer.Exit(130) from None
    finally:
        stop()
    root = steps[0].promise
    return View(tree_json(steps), None, items=[], exit=exits.code_for_state(root.state))
