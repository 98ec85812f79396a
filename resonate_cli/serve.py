"""``resonate serve`` (the daemon, in the foreground) and ``resonate worker`` (run an app's functions)."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import webbrowser
from typing import Any

import typer
from resonate_daemon.paths import is_db_url, read_token_file
from resonate_daemon.server.config import ServeConfig, check_log_level

from resonate.errors import InvalidRequest, ResonateError

from . import exits
from .client import Target, app_registry
from .output import err, fail
from .session import APP_HELP, CA_FILE_HELP, TOKEN_FILE_HELP, import_app, probe_or_fail, target_of, token_from

SOCKET_HELP = "Unix socket path (default: under the user runtime dir)."


def serve(
    ctx: typer.Context,
    socket: str = typer.Option(None, "--socket", envvar="RESONATE_SOCKET", help=SOCKET_HELP),
    db: str = typer.Option(None, "--db", envvar="RESONATE_DB", help="SQLite database file (default: user data dir), or a postgresql:// URL."),
    http: str = typer.Option(None, "--http", metavar="[HOST:]PORT",
                             help="Also listen on TCP, token required; PORT alone: 127.0.0.1 (this machine only)."),
    poll_port: int = typer.Option(None, "--poll-port", metavar="PORT", help="Legacy push stream port (GET /{group}/{pid})."),
    token: str = typer.Option(None, "--token", envvar="RESONATE_TOKEN", help="Token for TCP clients (default: generated beside the db)."),
    token_file: str = typer.Option(None, "--token-file", envvar="RESONATE_TOKEN_FILE", help=TOKEN_FILE_HELP),
    tls_cert: str = typer.Option(None, "--tls-cert", envvar="RESONATE_TLS_CERT", metavar="PEM",
                                 help="Serve https on --http, --poll-port and --ui-port with this certificate (chain); needs --tls-key."),
    tls_key: str = typer.Option(None, "--tls-key", envvar="RESONATE_TLS_KEY", metavar="PEM",
                                help="The certificate's private key (unencrypted PEM, mode 600)."),
    durability: str = typer.Option(None, "--durability", help="SQLite synchronous mode: full or normal."),
    max_body: int = typer.Option(None, "--max-body", metavar="BYTES", help="Request body limit (default 10 MiB)."),
    ping_interval: float = typer.Option(None, "--ping-interval", metavar="SECONDS", help="Push stream keep-alive period."),
    request_timeout: float = typer.Option(None, "--request-timeout", metavar="SECONDS",
                                          help="On TCP, a request must arrive whole this soon (default 10)."),
    log_level: str = typer.Option(None, "--log-level", help="debug, info, warning (default), error."),
    app: str = typer.Option(None, "--app", "-a", help=APP_HELP + " Supervised workers run it."),
    workers: int = typer.Option(None, "--workers", "-w", min=1, help="How many worker processes for --app."),
    reload: bool = typer.Option(False, "--reload", help="Restart the workers when the app's files change."),
    group: str = typer.Option(None, "--group", "-g", help="The group the --app workers join (default: default)."),
    retention: str = typer.Option(None, "--retention", metavar="DURATION", envvar="RESONATE_RETENTION",
                                  help="Delete completed workflows this long after they complete: 7d (default), "
                                       "12h, 30m; off (or 0) keeps everything."),
    ui_port: int = typer.Option(None, "--ui-port", metavar="PORT", envvar="RESONATE_UI_PORT",
                                help="Serve the browser UI on 127.0.0.1:PORT (https with --tls-cert; `resonate ui` prints the address that logs you in)."),
    ui_read_only: bool = typer.Option(False, "--ui-read-only", envvar="RESONATE_UI_READ_ONLY",
                                      help="The UI only shows: no resolve, reject, cancel, retry or fork."),
) -> None:
    """Run the daemon in the foreground until Ctrl+C or SIGTERM.

    Example: resonate serve --db ./resonate.db --http 127.0.0.1:8001
    """
    from resonate_daemon.server.server import serve as run

    from resonate_ui import create_ui

    try:
        config = ServeConfig.resolve(socket=socket, db=db, http=http, poll_port=poll_port,
                                     token=token_from(ctx, token, token_file), token_file="",
                                     durability=durability, max_body=max_body, ping_interval_s=ping_interval,
                                     request_timeout_s=request_timeout,
                                     log_level=log_level, app=app, workers=workers,
                                     reload=reload or None, group=group, tls_cert=tls_cert, tls_key=tls_key,
                                     retention=retention, ui_port=ui_port, ui_read_only=ui_read_only or None)
    except InvalidRequest as exc:
        fail(str(exc), exits.USAGE)
    try:
        code = run(config, ui=create_ui)  # the UI under /ui on every listener, and on --ui-port
    except ResonateError as exc:  # StartupError, StoreLocked: say why, no traceback
        fail(f"cannot start: {exc}", exits.ERROR)
    raise typer.Exit(code)


def ui(ctx: typer.Context,
       open_browser: bool = typer.Option(True, "--open/--no-open",
                                         help="Open it in a browser (only when stdout is a terminal).")) -> None:
    """Print the address of the running daemon's browser UI (it logs the browser in with the daemon's
    token), and open it in a browser when there is one. Exit 4 when no daemon answers or it has no UI.

    Example: resonate serve --ui-port 8080 & resonate ui
    """
    target = target_of(ctx)
    status = probe_or_fail(target)
    if status is None:
        fail(f"no resonate daemon answers at {target.where}; start one with a UI: resonate serve --ui-port 8080",
             exits.UNREACHABLE)
    if not status.ui:
        fail(f"the daemon at {target.where} serves no UI to browsers; restart it with --ui-port PORT: "
             "resonate stop && resonate serve --ui-port 8080", exits.UNREACHABLE)
    token = target.token
    if not token:
        try:
            # Where the daemon keeps a generated token: beside its database file, or its socket (PostgreSQL).
            token = read_token_file(f"{target.socket_path if is_db_url(status.db) else status.db}.token")
        except InvalidRequest as exc:
            fail(f"cannot read the daemon's token: {exc}; give it with --token-file", exits.USAGE)
    from resonate_ui.web import login_url

    url = login_url(status.ui, token)
    print(url, flush=True)
    if open_browser and sys.stdout.isatty():
        try:
            webbrowser.get().open(url)
        except webbrowser.Error:
            pass  # no browser here (a server, ssh): the address above is the answer


def worker(
    ctx: typer.Context,
    app: str = typer.Argument(..., help=APP_HELP),
    group: str = typer.Option("default", "--group", "-g", help="The group whose tasks this worker takes."),
    workers: int = typer.Option(None, "--workers", "-w", min=1, help="Threads running executions (default 4)."),
    socket: str = typer.Option(None, "--socket", help=SOCKET_HELP + " Overrides the global flag."),
    url: str = typer.Option(None, "--url", help="The daemon's URL (TCP), instead of the socket."),
    token: str = typer.Option(None, "--token", help="Bearer token for --url."),
    token_file: str = typer.Option(None, "--token-file", help=TOKEN_FILE_HELP),
    ca_file: str = typer.Option(None, "--ca-file", metavar="PEM", help=CA_FILE_HELP),
    log_level: str = typer.Option("warning", "--log-level", envvar="RESONATE_LOG_LEVEL",
                                  help="debug, info, warning (default: each failed attempt of a step), error."),
) -> None:
    """Run APP's registered functions for a daemon until Ctrl+C or SIGTERM.

    Example: resonate worker examples/factorial.py --group default
    """
    try:
        level = check_log_level(log_level)
    except InvalidRequest as exc:
        fail(str(exc), exits.USAGE)
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    base = target_of(ctx)
    target = Target(socket or base.socket, url or base.url, token_from(ctx, token, token_file) or base.token, base.db,
                    ca_file or base.ca_file)
    module = import_app(app)
    assert module is not None
    try:
        registry, deps = app_registry(module)
    except LookupError as exc:
        fail(str(exc), exits.USAGE)
    if probe_or_fail(target) is None:
        fail(f"no resonate daemon answers at {target.where}; a worker needs one: start `resonate serve`",
             exits.UNREACHABLE)
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    client = target.remote(group=group, registry=registry, dependencies=deps, retry_for=30.0)
    try:
        client.start()
        names = ", ".join(registry.names()) or "nothing"
        err.print(f"worker {client.pid} of group {group!r} on {target.where}: {names}", highlight=False)
        while not stop.wait(1.0):  # wake now and then so the interpreter can run signal handlers
            pass
        err.print("stopping: handing unfinished work back", highlight=False)
    finally:
        client.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
