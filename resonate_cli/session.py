"""What every command shares: the global target, opening the client once, parsing flags, mapping errors."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

import typer
from resonate_daemon.paths import read_token_file
from resonate_daemon.protocol.results import Status

from resonate.errors import InvalidRequest, ResonateError

from . import exits
from .client import Client, NeedsDaemon, Target, load_app, open_client
from .output import err, fail, fail_with, json_mode

APP_HELP = "Your app: a module path (pkg.mod) or a file (examples/factorial.py) that registers functions."


def target_of(ctx: typer.Context) -> Target:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, Target) else Target()


def probe_or_fail(target: Target) -> Status | None:
    """``target.probe()``; a TLS failure or a CA file that cannot be read ends the command with its message."""
    try:
        return target.probe()
    except ResonateError as exc:
        fail_with(exc)


def import_app(spec: str | None) -> ModuleType | None:
    if not spec:
        return None
    try:
        return load_app(spec)
    except typer.Exit:
        raise
    except (ImportError, FileNotFoundError, LookupError) as exc:
        fail(f"cannot load app {spec!r}: {exc}", exits.USAGE, kind=type(exc).__name__)
    except Exception as exc:  # the app's own import-time code failed: show what, not our traceback
        fail(f"importing app {spec!r} raised {type(exc).__name__}: {exc}", exits.ERROR)


@contextmanager
def using(ctx: typer.Context, *, app: ModuleType | None = None, require_daemon: bool = False,
          worker_group: str | None = None, quiet: bool = False, read: bool = False) -> Iterator[Client]:
    """Open the client for one command, map every error to its exit code, and always close it. ``quiet``:
    a second open in one command does not repeat the embedded-store notice."""
    try:
        client = open_client(target_of(ctx), app=app, require_daemon=require_daemon, worker_group=worker_group,
                             read=read)
    except NeedsDaemon as exc:
        fail(str(exc), exits.UNREACHABLE, kind="NeedsDaemon")
    except LookupError as exc:  # the app has no Resonate instance
        fail(str(exc), exits.USAGE, kind="LookupError")
    except Exception as exc:
        fail_with(exc)
    if not client.daemon and not json_mode() and not quiet:
        how = f", read-only: process {client.holder} holds it" if client.read_only else ""
        if client.missing:
            how = ", which does not exist: nothing is stored there (check --db/RESONATE_DB)"
        err.print(f"[dim]embedded store at {client.target.db_shown}{how} (no daemon at {client.target.socket_path})[/]",
                  highlight=False)
    try:
        yield client
    except (typer.Exit, typer.Abort):
        raise
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except Exception as exc:
        fail_with(exc)
    finally:
        client.close()


TOKEN_FILE_HELP = "A file holding the token (mode 600): unlike --token, it does not show in `ps`."
CA_FILE_HELP = "CA certificate(s) an https:// daemon's certificate must chain to (default: the system's)."


def token_from(ctx: typer.Context, token: str | None, token_file: str | None) -> str | None:
    """The token a command was given: --token (warned about when typed on the command line, where every
    user of the machine sees it in `ps`) or --token-file; not both."""
    source = ctx.get_parameter_source("token")
    if token and source is not None and source.name == "COMMANDLINE":
        err.print("[yellow]warning:[/] a token given as --token shows in `ps` to every user of this machine; "
                  "use --token-file FILE (mode 600) or the RESONATE_TOKEN environment variable", highlight=False)
    if token and token_file:
        fail("give --token or --token-file, not both", exits.USAGE)
    if token_file:
        try:
            return read_token_file(token_file)
        except InvalidRequest as exc:
            fail(str(exc), exits.USAGE)
    return token or None


# -- parsing ------------------------------------------------------------------------------------

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31_536_000}


def parse_duration(text: str | None) -> float | None:
    """``90``, ``90s``, ``5m``, ``2h``, ``1d``, ``500ms`` -> seconds."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w|y)?\s*", text)
    if not m:
        raise typer.BadParameter(f"{text!r} is not a duration; use e.g. 30s, 5m, 2h, 1d")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


def parse_tags(items: list[str] | None) -> dict[str, str]:
    tags: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{item!r} is not k=v")
        tags[key] = value
    return tags


def parse_value(text: str) -> object:
    """An argument: JSON where it parses (5, true, {"a": 1}), else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def read_data(text: str | None) -> str | None:
    """``--data``: JSON text, ``@file``, or ``-`` for stdin; validated as JSON before anything is sent."""
    if text is None:
        return None
    source = "--data"
    if text == "-":
        text, source = sys.stdin.read(), "stdin"
    elif text.startswith("@"):
        try:
            with open(text[1:]) as f:
                text, source = f.read(), text[1:]
        except OSError as exc:
            fail(f"cannot read {text[1:]!r}: {exc.strerror}", exits.USAGE)
    error = json_error(text)
    if error:
        fail(f"{source} is not valid JSON: {error}", exits.USAGE, kind="InvalidJSON")
    return text.strip()


def json_error(text: str) -> str | None:
    try:
        json.loads(text)
    except ValueError as exc:
        return str(exc)
    return None
