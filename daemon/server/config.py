"""The daemon's configuration, resolved once: flags > ``RESONATE_*`` environment > defaults.

``ServeConfig.resolve(...)`` is the only place that reads ``os.environ`` for the daemon and the only
place that resolves paths (through ``paths``), so the CLI, the tests and ``python -m resonate_daemon`` all
agree on where the socket and the database live. The result is frozen and passed down.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from .. import errors
from ..paths import MAX_SOCKET_PATH, default_socket_path, is_db_url, read_token_file, resolve_db

DEFAULT_MAX_BODY = 10 * 1024 * 1024  # 10 MiB: far above any sane promise param, far below memory trouble
DEFAULT_REQUEST_TIMEOUT_S = 10.0  # a TCP request must arrive whole this soon after its first byte
DEFAULT_PING_S = 15.0  # an idle push stream gets a comment this often, so half-open peers are noticed
DURABILITIES = ("full", "normal")
DEFAULT_RETENTION_MS = 7 * 86_400_000  # completed workflows are kept a week, then collected
RETENTION_OFF = ("off", "never", "none", "0")  # keep everything: no periodic collection at all
_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def parse_duration_ms(text: str) -> int:
    """``7d``, ``12h``, ``30m``, ``45s``, ``500ms``, ``2w`` (a bare number: seconds) -> milliseconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*", text)
    if not m:
        raise errors.InvalidRequest(f"{text!r} is not a duration; use e.g. 7d, 12h, 30m, 45s")
    return int(float(m.group(1)) * _UNITS_MS[m.group(2) or "s"])


def parse_retention(text: str) -> int | None:
    """``--retention``: a duration, or off (also 0, never, none): keep completed workflows forever."""
    if text.strip().lower() in RETENTION_OFF:
        return None
    ms = parse_duration_ms(text)
    return ms if ms > 0 else None


def parse_hostport(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[::1]:PORT``, or ``PORT`` / ``:PORT`` (127.0.0.1: this machine only; other machines
    need a host named, e.g. ``0.0.0.0:PORT``)."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise errors.InvalidRequest(f"expected HOST:PORT or PORT, got {text!r}")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


@dataclass(frozen=True, slots=True)
class ServeConfig:
    """Everything ``serve()`` needs. Build it with ``resolve`` unless you want no environment at all.

    Example::

        config = ServeConfig.resolve(socket="/tmp/r/d.sock", db="/tmp/r/r.db", http="127.0.0.1:8001")
        serve(config)
    """

    socket: str
    db: str
    durability: str = "full"
    http: tuple[str, int] | None = None
    poll_port: int | None = None
    token: str | None = None
    max_body: int = DEFAULT_MAX_BODY
    ping_interval_s: float = DEFAULT_PING_S
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    log_level: str = "warning"
    app: str | None = None  # with it, the daemon supervises `workers` processes of `resonate worker APP`
    workers: int = 1
    reload: bool = False  # restart those workers when the app's files change
    group: str = "default"  # the group the supervised workers join
    tls_cert: str | None = None  # with tls_key: the TCP listeners (--http, --poll-port, --ui-port) speak https
    tls_key: str | None = None
    # Completed workflows older than this are deleted by the scheduler, a batch at a time; None: never.
    retention_ms: int | None = DEFAULT_RETENTION_MS
    # The browser UI's own listener (127.0.0.1 only: a browser cannot reach a Unix socket), token required.
    ui_port: int | None = None
    ui_read_only: bool = False  # the UI shows, never acts: no resolve, reject, cancel, retry or fork

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def token_path(self) -> str:
        """Where a generated token is kept (0600, beside the database file; beside the socket for a
        PostgreSQL database) for remote workers to read."""
        return f"{self.socket if is_db_url(self.db) else self.db}.token"

    @property
    def needs_token(self) -> bool:
        return self.http is not None or self.poll_port is not None or self.ui_port is not None

    @classmethod
    def resolve(cls, *, socket: str | None = None, db: str | None = None, durability: str | None = None,
                http: str | None = None, poll_port: int | str | None = None, token: str | None = None,
                token_file: str | None = None, max_body: int | str | None = None, ping_interval_s: float | str | None = None,
                request_timeout_s: float | str | None = None,
                log_level: str | None = None, app: str | None = None, workers: int | str | None = None,
                reload: bool | str | None = None, group: str | None = None,
                tls_cert: str | None = None, tls_key: str | None = None, retention: str | None = None,
                ui_port: int | str | None = None, ui_read_only: bool | str | None = None,
                env: Mapping[str, str] | None = None) -> ServeConfig:
        """Each argument left None falls back to ``RESONATE_<NAME>`` in ``env`` (default os.environ)."""
        env = os.environ if env is None else env

        def pick(value: object, name: str) -> object:
            if value is not None:
                return value
            text = env.get(f"RESONATE_{name}")
            return text if text not in (None, "") else None

        socket_path = str(pick(socket, "SOCKET") or default_socket_path())
        if len(os.path.abspath(socket_path).encode()) > MAX_SOCKET_PATH:
            raise errors.InvalidRequest(
                f"socket path {socket_path!r} is longer than {MAX_SOCKET_PATH} bytes (the AF_UNIX limit)")
        dur = str(pick(durability, "DURABILITY") or "full")
        if dur not in DURABILITIES:
            raise errors.InvalidRequest(f"durability must be one of {', '.join(DURABILITIES)}, not {dur!r}")
        http_text = pick(http, "HTTP")
        port = pick(poll_port, "POLL_PORT")
        app_spec = str(pick(app, "APP") or "") or None
        n_workers = pick(workers, "WORKERS")
        reload_value = pick(reload, "RELOAD")
        reload_flag = reload_value is True or str(reload_value).lower() in ("1", "true", "yes", "on")
        worker_group = str(pick(group, "GROUP") or "default")
        if app_spec is None and (n_workers is not None or reload_flag):
            raise errors.InvalidRequest("--workers and --reload need --app (the app the workers run)")
        if "/" in worker_group or "@" in worker_group:
            raise errors.InvalidRequest(f"group must be a plain name, not {worker_group!r}")
        cert, key = pick(tls_cert, "TLS_CERT"), pick(tls_key, "TLS_KEY")
        if bool(cert) != bool(key):
            raise errors.InvalidRequest("give both --tls-cert and --tls-key (the certificate and its private key), "
                                        "or neither")
        ui = pick(ui_port, "UI_PORT")
        if cert and not http_text and port is None and ui is None:
            raise errors.InvalidRequest("--tls-cert and --tls-key secure the TCP listeners: give --http "
                                        "(or --poll-port, --ui-port) too; the Unix socket needs no TLS")
        retention_text = pick(retention, "RETENTION")
        read_only = pick(ui_read_only, "UI_READ_ONLY")
        return cls(
            socket=os.path.abspath(socket_path),
            db=_db(pick(db, "DB")),
            durability=dur,
            http=parse_hostport(str(http_text)) if http_text else None,
            poll_port=_int(port, "poll port", 0, 65535) if port is not None else None,
            token=_token(pick(token, "TOKEN"), pick(token_file, "TOKEN_FILE")),
            max_body=_int(_or(pick(max_body, "MAX_BODY"), DEFAULT_MAX_BODY), "max body", 1, 2**31),
            ping_interval_s=_seconds(_or(pick(ping_interval_s, "PING_INTERVAL"), DEFAULT_PING_S), "ping interval"),
            request_timeout_s=_seconds(_or(pick(request_timeout_s, "REQUEST_TIMEOUT"), DEFAULT_REQUEST_TIMEOUT_S),
                                       "request timeout"),
            log_level=check_log_level(str(pick(log_level, "LOG_LEVEL") or "warning")),
            app=app_spec,
            workers=_int(n_workers, "workers", 1, 1024) if n_workers is not None else 1,
            reload=reload_flag,
            group=worker_group,
            tls_cert=os.path.abspath(str(cert)) if cert else None,
            tls_key=os.path.abspath(str(key)) if key else None,
            retention_ms=parse_retention(str(retention_text)) if retention_text is not None else DEFAULT_RETENTION_MS,
            ui_port=_int(ui, "ui port", 1, 65535) if ui is not None else None,
            ui_read_only=read_only is True or str(read_only).lower() in ("1", "true", "yes", "on"),
        )


LOG_LEVELS = ("debug", "info", "warning", "error")


def check_log_level(level: str) -> str:
    if level.lower() not in LOG_LEVELS:
        raise errors.InvalidRequest(f"log level must be one of {', '.join(LOG_LEVELS)}, not {level!r}")
    return level.lower()


def _token(token: object, token_file: object) -> str | None:
    if token and token_file:
        raise errors.InvalidRequest("give a token or a token file, not both")
    if token_file:
        return read_token_file(str(token_file))
    return str(token) if token else None


def _int(value: object, what: str, lo: int, hi: int) -> int:
    try:
        n = int(str(value))
    except ValueError:
        raise errors.InvalidRequest(f"{what} must be an integer, not {value!r}") from None
    if not lo <= n <= hi:
        raise errors.InvalidRequest(f"{what} must be from {lo} to {hi}, not {n}")
    return n


def _db(value: object) -> str:
    """A file path (made absolute) or a PostgreSQL URL, checked enough to refuse a typo in one line."""
    text = str(value) if value else ""
    if "://" in text and not is_db_url(text):
        scheme = text.split("://", 1)[0]
        raise errors.InvalidRequest(f"--db takes a file path or a postgresql:// URL, not a {scheme}:// URL")
    if is_db_url(text):
        from urllib.parse import urlsplit

        try:
            urlsplit(text).port  # noqa: B018  # a port that is not a number raises here
        except ValueError as exc:
            raise errors.InvalidRequest(f"bad PostgreSQL URL (--db): {exc}") from None
    return resolve_db(text or None)


def _or(value: object, default: object) -> object:
    """``value`` unless it was not given: a 0 given is kept (and refused by the check), not replaced."""
    return default if value is None else value


def _seconds(value: object, what: str) -> float:
    try:
        n = float(str(value))
    except ValueError:
        raise errors.InvalidRequest(f"{what} must be a number of seconds, not {value!r}") from None
    if not 0 < n <= 3600:
        raise errors.InvalidRequest(f"{what} must be more than 0 and at most 3600 seconds, not {n}")
    return n
