"""``serve(config)``: the daemon process. uvicorn on a Unix socket, optional TCP listeners, lifecycle.

Order of start-up, each step a reason:
0. the TLS certificate and key, if given, are loaded (a bad pair fails before anything is touched);
1. a leftover socket file is probed: a live daemon answers and we stop (never remove a live socket);
   a dead one is removed;
2. the store is opened (it flocks the database, so a second daemon on the same file fails clearly);
3. the socket is bound by us under umask 077 and chmod 0600 before listen, so no other user can ever
   connect, then handed to uvicorn; TCP listeners are bound the same way (and speak TLS if configured);
4. one uvicorn ``Server`` per listener share one event loop, engine and dispatcher. We install the
   signal handlers ourselves: uvicorn's would re-raise SIGTERM after shutdown (exit code -15).
SIGINT/SIGTERM end the push streams, drain requests, and exit 0; a second SIGINT forces. The socket
file is removed in ``finally``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import signal
import socket
import ssl
import stat
import sys
from collections.abc import Iterator
from typing import Any

import uvicorn

from ..core.engine import Engine
from ..errors import StartupError
from ..paths import default_socket_path, display_db, socket_dir_problem
from ..store import open_store
from .api import AppState, UiFactory, create_app
from .batch import Batcher
from .config import ServeConfig
from .dispatch import Dispatcher
from .guard import TCP_BACKLOG, Budget, protocol_for, quiet_exception_handler, raise_nofile
from .scheduler import Scheduler
from .supervisor import Supervisor

log = logging.getLogger("resonate.server")

EXIT_OK = 0
EXIT_STARTUP_FAILURE = 3  # another daemon holds the socket or the database, or a bind failed


class _Server(uvicorn.Server):
    """uvicorn's server without its signal capture (we handle signals once for all listeners)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def prepare_socket_path(path: str) -> None:
    """Create the socket's directory (0700) if needed; remove a stale socket, refuse a live one."""
    directory = os.path.dirname(path)
    if not os.path.lexists(directory):
        os.makedirs(directory, mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)
    elif path == default_socket_path() and os.path.isdir(directory) and not os.path.islink(directory) \
            and os.stat(directory).st_uid == os.geteuid():
        os.chmod(directory, 0o700)  # our own default directory: make sure it is private
    problem = socket_dir_problem(directory)
    if problem is not None:
        raise StartupError(f"refusing to put the socket in {directory}: {problem}. Use a directory only you can "
                           "write (the default, or --socket in a folder of yours with mode 700)")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise StartupError(f"{path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        os.unlink(path)  # nobody listens: a daemon that died without cleaning up
        return
    except OSError as exc:
        raise StartupError(f"cannot probe the existing socket {path}: {exc}") from None
    finally:
        probe.close()
    raise StartupError(f"another resonate daemon is listening on {path}; stop it first "
                       "(or use --socket to run a second one elsewhere)")


def bind_unix(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # the socket is born 0600: no window in which others could connect
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def bind_tcp(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def load_token(config: ServeConfig) -> str:
    """The configured token, else the one kept beside the database, else a new one written there (0600)."""
    if config.token:
        return config.token
    path = config.token_path
    with contextlib.suppress(FileNotFoundError):
        with open(path) as f:
            text = f.read().strip()
        if text:
            return text
    token = secrets.token_urlsafe(32)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


class _Encrypted(Exception):
    """Raised by the password callback: a key that asks for a password cannot be loaded unattended."""


def _no_password() -> str:
    raise _Encrypted


def check_tls(config: ServeConfig) -> None:
    """Load the certificate and key once before anything is bound, so a bad pair is a StartupError (exit 3,
    one line) and not a traceback from inside uvicorn's start. An encrypted key is refused: OpenSSL would
    otherwise prompt on the terminal of a daemon nobody watches."""
    if config.tls_cert is None:
        return
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    what = f"TLS certificate {config.tls_cert!r} with key {config.tls_key!r}"
    try:
        context.load_cert_chain(config.tls_cert, config.tls_key, _no_password)
    except _Encrypted:
        raise StartupError(f"cannot load {what}: the key is encrypted; give an unencrypted key file "
                           "(mode 600), e.g. `openssl pkey -in KEY -out plain.key`") from None
    except OSError as exc:  # a missing or unreadable file, a PEM that is not one, a key for another cert
        reason = exc.strerror or getattr(exc, "reason", None) or str(exc)
        reason = re.sub(r" \(_ssl\.c:\d+\)$", "", reason)  # OpenSSL's source line: noise to a user
        raise StartupError(f"cannot load {what}: {reason} (both must be PEM files, the key matching "
                           "the certificate)") from None


def _loop_factory() -> Any:
    """uvloop's event loop when installed (the daemon's loop does little else than move bytes between
    sockets and the engine: it halves that cost); asyncio's own otherwise."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _uvicorn(app: Any, config: ServeConfig, budget: Budget, sock: socket.socket, *, tls: bool = False) -> _Server:
    # TLS through uvicorn's ssl_certfile/ssl_keyfile (public since long before our uvicorn floor); the
    # pair was already loaded once by check_tls, which is where a bad one is reported.
    tcp = sock.family != socket.AF_UNIX
    http = protocol_for(budget, tcp=tcp, request_timeout=config.request_timeout_s)
    cfg = uvicorn.Config(app, http=http, backlog=TCP_BACKLOG if tcp else 2048, log_level=config.log_level,
                         access_log=False, lifespan="off",
                         timeout_graceful_shutdown=5, server_header=False, proxy_headers=False,
                         ws="none", timeout_keep_alive=75,
                         ssl_certfile=config.tls_cert if tls else None, ssl_keyfile=config.tls_key if tls else None)
    return _Server(cfg)


def serve(config: ServeConfig, *, ready: Any = None, ui: UiFactory | None = None) -> int:
    """Run the daemon in the foreground until SIGINT/SIGTERM; returns the exit code.

    ``ready`` (optional) is called with no arguments once every listener accepts connections. ``ui``
    (optional; ``resonate serve`` passes ``resonate_ui.create_ui``) serves the browser UI under /ui on
    every listener, and on ``config.ui_port`` (which needs it).
    Raises ``StartupError`` or ``errors.StoreLocked`` when it cannot start.

    Example::

        from resonate_daemon.config import ServeConfig
        from resonate_daemon.server import serve
        raise SystemExit(serve(ServeConfig.resolve(socket="/tmp/r/d.sock", db="/tmp/r/r.db")))
    """
    logging.basicConfig(level=config.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    check_tls(config)
    if config.ui_port is not None and ui is None:
        raise StartupError("--ui-port needs the UI: start the daemon with `resonate serve`")
    prepare_socket_path(config.socket)
    store = open_store(config.db, config.durability)
    sockets: list[socket.socket] = []
    unix_bound = False
    reader = None
    batch: Batcher | None = None
    try:
        token = load_token(config) if config.needs_token else None
        dispatcher = Dispatcher(config.ping_interval_s)
        engine = Engine(store, sink=dispatcher.sink)
        engine.requeue_sent()
        batch = Batcher(engine)
        dispatcher.attach(engine, batch)
        reader = store.reader()
        state = AppState(engine, dispatcher, config, batch, reader)

        listeners: list[tuple[Any, socket.socket, bool]] = []  # (app, socket, speaks TLS)
        unix = bind_unix(config.socket)
        unix_bound = True
        sockets.append(unix)
        listeners.append((create_app(state, ui=ui), unix, False))
        if config.http is not None:
            tcp = bind_tcp(*config.http)
            sockets.append(tcp)
            listeners.append((create_app(state, token=token, ui=ui), tcp, config.tls))
        if config.ui_port is not None:  # this machine only (browsers on it reach loopback); https with --tls-cert
            browser = bind_tcp("127.0.0.1", config.ui_port)
            sockets.append(browser)
            listeners.append((create_app(state, token=token, ui=ui, ui_only=True), browser, config.tls))
        if config.poll_port is not None:
            host = config.http[0] if config.http is not None else "127.0.0.1"
            poll = bind_tcp(host, config.poll_port)
            sockets.append(poll)
            listeners.append((create_app(state, token=token, legacy_poll_only=True), poll, config.tls))

        supervisor = None
        if config.app is not None:
            try:
                supervisor = Supervisor(config.app, workers=config.workers, socket=config.socket,
                                        group=config.group, reload=config.reload)
            except ValueError as exc:  # --reload on a module path that cannot be found
                raise StartupError(str(exc)) from None
        try:
            with asyncio.Runner(loop_factory=_loop_factory()) as runner:
                runner.run(_run(config, listeners, engine, batch, dispatcher, ready, supervisor))
        finally:
            if supervisor is not None:
                supervisor.stop()  # already done on a signal; here for a listener that failed
        return EXIT_OK
    finally:
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()
        if unix_bound:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(config.socket)
        if reader is not None:
            reader.close()
        if batch is not None:
            batch.close()
        store.close()


async def _run(config: ServeConfig, listeners: list[tuple[Any, socket.socket, bool]], engine: Engine,
               batch: Batcher, dispatcher: Dispatcher, ready: Any, supervisor: Supervisor | None = None) -> None:
    budget = Budget(raise_nofile())
    servers = [_uvicorn(app, config, budget, sock, tls=tls) for app, sock, tls in listeners]
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(quiet_exception_handler())
    timers = Scheduler(engine, batch)
    scheduler = asyncio.create_task(timers.run(), name="resonate-scheduler")
    retention = (asyncio.create_task(timers.retain(config.retention_ms), name="resonate-retention")
                 if config.retention_ms is not None else None)

    def on_signal(sig: int) -> None:
        if supervisor is not None and not supervisor.stopping:
            # Workers first, while the daemon still answers, so they can hand their tasks back;
            # then the listeners. A second signal meanwhile goes on to stop the daemon at once.
            loop.run_in_executor(None, supervisor.stop).add_done_callback(lambda _: on_signal(signal.SIGTERM))
            return
        if any(s.should_exit for s in servers) and sig == signal.SIGINT:
            for s in servers:
                s.force_exit = True  # a second Ctrl+C: stop waiting for connections
            return
        for s in servers:
            s.should_exit = True
        dispatcher.close_all()  # push streams never end on their own; end them so the drain finishes

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        tasks = [asyncio.create_task(s.serve(sockets=[sock])) for s, (_, sock, _) in zip(servers, listeners, strict=True)]
        while not all(s.started for s in servers):
            if any(t.done() for t in tasks):
                break
            await asyncio.sleep(0.01)
        else:
            where = [f"unix:{config.socket}"]
            scheme = "https" if config.tls else "http"
            if config.http:
                where.append(f"{scheme}://{config.http[0]}:{config.http[1]}")
            if config.poll_port is not None:
                where.append(f"poll port {config.poll_port}" + (" (TLS)" if config.tls else ""))
            if config.ui_port is not None:
                where.append(f"ui {scheme}://127.0.0.1:{config.ui_port}/ui/")
            print(f"resonate daemon listening on {', '.join(where)} (db {display_db(config.db)})", file=sys.stderr, flush=True)
            if ready is not None:
                ready()
            if supervisor is not None:
                supervisor.start()
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        on_signal(signal.SIGTERM)  # one listener ended (a signal, or it failed): stop them all
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                raise result
    finally:
        for task in (scheduler, retention):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)

