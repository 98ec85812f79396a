"""``resonate steps`` and ``resonate tree``: a workflow's history (``resonate.history``) as rich tables and
trees, and as --json documents."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table
from rich.tree import Tree as RichTree

from resonate.history import Step, took_text
from resonate.render import promise_doc, when

from .render import state_text

# -- rendering ----------------------------------------------------------------------------------------

def label(step: Step) -> str:
    """One line of ``resonate tree``: function, id, kind, state, duration, attempts, worker, error."""
    p = step.promise
    name = f"[bold]{escape(step.func)}[/] " if step.func and step.kind != "sleep" else ""
    parts = [f"{name}[dim]{escape(p.id)}[/] {step.kind} {state_text(p.state)} [dim]({took_text(step)})[/]"]
    if step.attempts > 1:
        parts.append(f"{step.attempts} attempts")
    if step.worker and not p.pending:
        parts.append(f"[dim]on {escape(step.worker)}[/]")
    if step.error is not None:
        parts.append(f"[red]{escape(str(step.error))}[/]")
    if step.note:
        parts.append(f"[yellow]{escape(step.note)}[/]")
    return " · ".join(parts)


def rich_tree(steps: list[Step]) -> RichTree:
    top = RichTree(label(steps[0]))
    stack: list[tuple[int, RichTree]] = [(0, top)]
    for step in steps[1:]:
        while stack and stack[-1][0] >= step.depth:
            stack.pop()
        node = stack[-1][1].add(label(step))
        stack.append((step.depth, node))
    return top


def tree_json(steps: list[Step]) -> dict[str, Any]:
    """The tree as --json prints it: each node the promise (with ``error``), its history, its children."""
    def node(step: Step) -> dict[str, Any]:
        return {**promise_doc(step.promise), **{k: v for k, v in step.to_json().items() if k not in ("id", "state")},
                "children": []}

    top = node(steps[0])
    stack: list[tuple[int, dict[str, Any]]] = [(0, top)]
    for step in steps[1:]:
        while stack and stack[-1][0] >= step.depth:
            stack.pop()
        doc = node(step)
        stack[-1][1]["children"].append(doc)
        stack.append((step.depth, doc))
    return top


def steps_table(steps: list[Step]) -> Table:
    table = Table(box=None, header_style="bold")
    for col in ("#", "STEP", "FUNCTION", "ARGS", "STATE", "STARTED", "TOOK", "ATTEMPTS", "WORKER", "ERROR / NOW"):
        table.add_column(col, overflow="fold" if col in ("ERROR / NOW", "STEP") else "ellipsis",
                         no_wrap=col not in ("ERROR / NOW", "STEP"), max_width=40 if col == "ARGS" else None)
    for step in steps:
        p = step.promise
        what = f"[red]{escape(str(step.error))}[/]" if step.error is not None else escape(step.note)
        table.add_row(step.number, "  " * step.depth + escape(p.id), escape(step.func), escape(step.args),
                      state_text(p.state), when(step.started) if step.started else "-", took_text(step),
                      str(step.attempts), escape(step.worker or "-"), what)
    return table
