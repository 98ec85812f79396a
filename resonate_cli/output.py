"""Machine output is a contract: one decorator gives every read command ``--json`` (and ``--json-lines``
where it lists), the command returns a ``View``, and the decorator renders it.

``--json`` prints exactly one JSON document on stdout with the API's field names; ``--json-lines`` one
object per line; diagnostics and errors go to stderr (``{"error": {...}}`` under ``--json``). Human
output is the ``View``'s own renderer (rich tables and trees).
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from . import exits

# Piped or redirected output is not cut to 80 columns (a terminal's own width still applies to people).
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 240)
err = Console(stderr=True, soft_wrap=True)

JSON_HELP = "Print one JSON document on stdout (the API's field names)."
JSON_LINES_HELP = "Print one JSON object per line (NDJSON)."

# How the running command prints: "human", "json" or "lines" (set by @output, read by fail()).
MODE: contextvars.ContextVar[str] = contextvars.ContextVar("resonate_cli_output", default="human")
F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class View:
    """What a command shows: ``doc`` for --json, ``items`` for --json-lines, ``human`` for people; and
    the exit code it ends with."""

    doc: Any
    human: Callable[[], None] | None = None
    items: Iterable[Any] | None = None
    exit: int = exits.OK


def json_mode() -> bool:
    return MODE.get() != "human"


def output(*, lines: bool = False, json_help: str = JSON_HELP) -> Callable[[F], F]:
    """Add ``--json`` (and with ``lines``, ``--json-lines``) to a command whose body returns a ``View``."""

    def decorate(fn: F) -> F:
        extra = [inspect.Parameter("as_json", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                                   default=typer.Option(False, "--json", help=json_help))]
        if lines:
            extra.append(inspect.Parameter("json_lines", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                                           default=typer.Option(False, "--json-lines", help=JSON_LINES_HELP)))

        @functools.wraps(fn)
        def command(*args: Any, as_json: bool = False, json_lines: bool = False, **kwargs: Any) -> None:
            token = MODE.set("json" if as_json else "lines" if json_lines else "human")
            try:
                view = fn(*args, **kwargs)
                if view is not None:
                    show(view)
            finally:
                MODE.reset(token)

        sig = inspect.signature(fn)
        params = [p for p in sig.parameters.values() if p.kind != inspect.Parameter.VAR_KEYWORD]
        command.__signature__ = sig.replace(parameters=[*params, *extra])  # type: ignore[attr-defined]
        command.__annotations__ = {**fn.__annotations__, "as_json": bool, "json_lines": bool}
        return command  # type: ignore[return-value]

    return decorate


def show(view: View) -> None:
    mode = MODE.get()
    if mode == "json":
        emit_json(view.doc)
    elif mode == "lines":
        emit_lines(view.items if view.items is not None else [view.doc])
    elif view.human is not None:
        view.human()
    if view.exit != exits.OK:
        raise typer.Exit(view.exit)


def emit_json(doc: Any) -> None:
    """Exactly one JSON document on stdout."""
    sys.stdout.write(json.dumps(doc, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def emit_lines(docs: Iterable[Any]) -> None:
    for doc in docs:
        sys.stdout.write(json.dumps(doc, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def fail(message: str, code: int, *, kind: str | None = None, api_code: int | None = None) -> NoReturn:
    """Print an error on stderr (``{"error": {...}}`` under --json/--json-lines) and exit with ``code``."""
    if json_mode():
        body: dict[str, Any] = {"message": message, "exit": code}
        if kind:
            body["type"] = kind
        if api_code:
            body["code"] = api_code
        sys.stderr.write(json.dumps({"error": body}) + "\n")
    else:
        err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def fail_with(exc: BaseException) -> NoReturn:
    code = exits.code_for(exc)
    api_code = getattr(exc, "code", None)
    fail(str(exc) or type(exc).__name__, code, kind=type(exc).__name__,
         api_code=api_code if isinstance(api_code, int) else None)
