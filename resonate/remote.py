"""Remote mode: a daemon over HTTP/1.1, on its Unix socket or a TCP URL, with the standard library only.

``RemoteTransport.call(op)`` sends the op's request (``op.request()``) and decodes the answer
(``op.result``); 4xx answers raise the matching ``resonate.errors`` class at once, connection errors and
5xx answers are retried for ``retry_for`` seconds (a worker rides out a daemon restart). Requests go
through one keep-alive ``http.client`` connection per calling thread; the push stream (server-sent
events) has its own connection in its own thread and reconnects by itself.

One HTTP stack on public APIs only: ``http.client.HTTPConnection`` with ``connect`` overridden for
AF_UNIX, the extension point its documentation gives; ``https://`` URLs use ``HTTPSConnection`` with a
context from ``ssl.create_default_context(cafile=...)`` (the system's CAs, or the one a daemon's
self-signed certificate was made with). It costs about 0.4 ms less per request than an
httpx client here (ping over the Unix socket: 320 µs against 735 µs), and a worker makes one request per
durable step.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import socket as _socket
import ssl  # costs nothing more here: http.client imports it; `import resonate` loads neither
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, TypeVar

from resonate_daemon import errors
from resonate_daemon.paths import default_socket_path, peer_uid, read_token_file, trusted_uid
from resonate_daemon.protocol import ClaimTask, CreateAndSubscribe, Op
from resonate_daemon.protocol.records import Message
from resonate_daemon.protocol.wire import NOW_HEADER, fence_header, poll_path

from .starts import Done, Starter
from .transport import OnMessage

log = logging.getLogger("resonate")
R = TypeVar("R")

STREAM_CONNECT_TIMEOUT_S = 10.0
RECONNECT_MAX_S = 2.0


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("resonate", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.unix_path)
            uid = peer_uid(sock)
        except OSError:
            sock.close()  # a failed connect must not leak the socket (one per retry while the daemon is down)
            raise
        if not trusted_uid(uid):  # checked before a byte is sent: a token, a promise, an argument
            sock.close()
            raise errors.UntrustedDaemon(
                f"the process listening on {self.unix_path} runs as uid {uid}, not as you (uid {os.geteuid()}) "
                "or root; nothing was sent to it. Another user may have put it there: remove the socket, or "
                "use a socket in a directory only you can write (--socket / RESONATE_SOCKET)")
        self.sock = sock


def connection_factory(*, socket: str | None, url: str | None, ca_file: str | None = None,
                       ) -> tuple[str, str, Callable[[float | None], http.client.HTTPConnection]]:
    """(where, path prefix, new connection) for a Unix socket path or an http(s):// URL. ``ca_file``: the
    CA certificate(s) an https daemon's certificate must chain to (default: the system's)."""
    if url:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise errors.InvalidRequest(f"cannot reach {url!r}: use http://host:port or https://host:port")
        host, port = parts.hostname, parts.port
        if parts.scheme == "https":
            context = tls_context(ca_file)
            return url.rstrip("/"), parts.path.rstrip("/"), lambda timeout: http.client.HTTPSConnection(
                host, port, timeout=timeout, context=context)
        return url.rstrip("/"), parts.path.rstrip("/"), lambda timeout: http.client.HTTPConnection(
            host, port, timeout=timeout)
    path = socket or default_socket_path()
    return path, "", lambda timeout: _UnixHTTPConnection(path, timeout)


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """Verify the daemon's certificate and host name against ``ca_file`` (or the system's CAs)."""
    try:
        return ssl.create_default_context(cafile=ca_file)
    except OSError as exc:  # missing, unreadable, or not PEM (SSLError is an OSError)
        reason = exc.strerror or getattr(exc, "reason", None) or str(exc)
        reason = re.sub(r" \(_ssl\.c:\d+\)$", "", reason)  # OpenSSL's source line: noise to a user
        raise errors.InvalidRequest(f"cannot load CA file {ca_file!r}: {reason}") from None


_CA_HINT = "pass the CA certificate that signed it: Resonate.remote(ca_file=...), --ca-file or RESONATE_CA_FILE"


def tls_failure(exc: BaseException, where: str, ca_file: str | None) -> errors.TLSFailed | None:
    """The TLSFailed an exception means, or None. These are not retried: waiting will not change them."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        if exc.verify_code in (62, 64):  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH
            hint = "use a host name or address the certificate names (its subjectAltName)"
        elif ca_file:
            hint = f"{ca_file!r} is not the CA that signed it; {_CA_HINT}"
        else:
            hint = _CA_HINT
        return errors.TLSFailed(f"the daemon at {where} presented a certificate this client does not trust "
                                f"({exc.verify_message}); {hint}")
    if isinstance(exc, ssl.SSLError) and not isinstance(exc, ssl.SSLEOFError):  # EOF: cut mid-handshake, transient
        return errors.TLSFailed(f"TLS handshake with {where} failed ({exc.reason or exc}); does it serve TLS? "
                                "A daemon started without --tls-cert speaks http://, not https://")
    return None


def speaks_tls(host: str, port: int, timeout: float) -> bool:
    """Whether a TLS handshake succeeds at host:port (asked after a plain http:// request was cut off)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # a question about the protocol only: nothing is sent over it
    try:
        with _socket.create_connection((host, port), timeout=timeout) as raw, context.wrap_socket(raw):
            return True
    except OSError:
        return False


class _Connections:
    """One keep-alive HTTP/1.1 connection per calling thread, for the request/response calls."""

    def __init__(self, new: Callable[[], http.client.HTTPConnection]) -> None:
        self._new = new
        self._local = threading.local()
        self._all: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def get(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._new()
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def drop(self) -> None:
        """Close this thread's connection (after an error): its next request opens a new one."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            self._local.conn = None
            conn.close()
            with self._lock:
                if conn in self._all:
                    self._all.remove(conn)

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()


def from_environment(socket: str | None, url: str | None, token: str | None, ca_file: str | None = None,
                     env: Mapping[str, str] | None = None) -> tuple[str | None, str | None, str | None, str | None]:
    """Where the daemon is: the arguments given, else ``RESONATE_SOCKET`` / ``RESONATE_URL`` /
    ``RESONATE_TOKEN`` or ``RESONATE_TOKEN_FILE`` / ``RESONATE_CA_FILE`` (as the CLI reads them), else
    the default socket."""
    env = os.environ if env is None else env
    if socket is None and url is None:
        socket, url = env.get("RESONATE_SOCKET") or None, env.get("RESONATE_URL") or None
    if token is None:
        token = env.get("RESONATE_TOKEN") or None
        if token is None and env.get("RESONATE_TOKEN_FILE"):
            token = read_token_file(env["RESONATE_TOKEN_FILE"])
    if ca_file is None:
        ca_file = env.get("RESONATE_CA_FILE") or None
    return socket, url, token, ca_file


class RemoteTransport:
    in_process = False

    def __init__(self, *, socket: str | None = None, url: str | None = None, token: str | None = None,
                 ca_file: str | None = None, retry_for: float = 30.0, timeout: float = 10.0) -> None:
        socket, url, token, ca_file = from_environment(socket, url, token, ca_file)
        self._where, self._prefix, self._new = connection_factory(socket=socket, url=url, ca_file=ca_file)
        self._ca_file = ca_file
        parts = urllib.parse.urlsplit(url) if url else None
        # A plain http:// URL: if a request is cut off without an answer, ask once whether TLS is spoken there.
        self._plain: tuple[str, int] | None = (
            (parts.hostname or "", parts.port or 80) if parts is not None and parts.scheme == "http" else None)
        self._stream_error: errors.ResonateError | None = None
        self._stream_settled = threading.Event()  # the push stream connected, or cannot (TLS)
        self._headers = {"Accept": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._conns = _Connections(lambda: self._new(timeout))
        self.retry_for = retry_for
        self._closing = threading.Event()
        self._stream: threading.Thread | None = None
        self._stream_conn: http.client.HTTPConnection | None = None
        self.connected = threading.Event()
        self._starter: Starter | None = None  # made by the first start_soon
        self._pid: str | None = None  # the push stream's process id and lease (connect)
        self._lease_ms: int | None = None
        self._starter_lock = threading.Lock()
        # Until the daemon's first answer says its time, ours (epoch ms on the monotonic clock's pace).
        self._offset = time.time_ns() // 1_000_000 - time.monotonic_ns() // 1_000_000

    @property
    def where(self) -> str:
        return self._where

    def now(self) -> int:
        """The daemon's clock, as of its last answer moved on by our monotonic clock: every deadline a
        worker sets (a sleep, a timeout, a retry's timer) is on the daemon's time, whatever ours says."""
        return time.monotonic_ns() // 1_000_000 + self._offset

    def _saw_clock(self, value: str | None) -> None:
        if value is not None and value.isdigit() and len(value) < 19:
            self._offset = int(value) - time.monotonic_ns() // 1_000_000

    # -- requests ---------------------------------------------------------------------------------
    def start_soon(self, op: CreateAndSubscribe, done: Done) -> None:
        """Send a start in the background, batched with the others queued (``starts.py``)."""
        with self._starter_lock:
            if self._starter is None:
                self._starter = Starter(self._call)
        self._starter.submit(op, done)

    def call(self, op: Op[R], fence: tuple[str, int] | None = None) -> R:
        starter = self._starter
        if starter is not None and starter.owes():  # no request overtakes the starts queued before it
            starter.flush()
        return self._call(op, fence)

    def _call(self, op: Op[R], fence: tuple[str, int] | None = None) -> R:
        req = op.request()
        headers = {**self._headers, **req.headers}
        if fence is not None:
            headers.update(fence_header(fence))
        payload = None
        if req.body is not None:
            payload = json.dumps(req.body, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        status, body = self._send(req.method, self._prefix + req.target, payload, headers)
        return op.result(status, body)

    def _send(self, method: str, target: str, payload: bytes | None, headers: dict[str, str]) -> tuple[int, Any]:
        deadline = time.monotonic() + self.retry_for
        delay = 0.05
        first = True
        while True:
            try:
                status, raw = self._exchange(method, target, payload, headers)
            except (OSError, http.client.HTTPException) as exc:
                self._conns.drop()
                problem = self._tls_problem(exc)
                if problem is not None:
                    raise problem from None
                if self._closing.is_set() or time.monotonic() + delay > deadline:
                    raise errors.Unreachable(f"no resonate daemon answers at {self._where}: {exc}") from None
                if first:  # most often a keep-alive connection the daemon closed while idle: reconnect now
                    first = False
                    continue
            else:
                try:
                    data = json.loads(raw) if raw else None
                except ValueError:
                    raise errors.Unreachable(f"{self._where} answered HTTP {status} with a body that is not "
                                             f"JSON: {raw[:80]!r}; is that a resonate daemon?") from None
                if status < 500:
                    if status >= 400:
                        raise errors.from_json(data, status)
                    return status, data
                if time.monotonic() + delay > deadline or _permanent(data):
                    raise errors.from_json(data, status)
            time.sleep(delay)  # backoff between retries of a failed request, not a test wait
            delay = min(delay * 2, 1.0)

    def _tls_problem(self, exc: BaseException) -> errors.TLSFailed | None:
        problem = tls_failure(exc, self._where, self._ca_file)
        if problem is None and self._plain is not None and isinstance(exc, (ConnectionResetError, http.client.BadStatusLine)):
            host, port = self._plain
            self._plain = None  # asked once per transport: the answer does not change while it runs
            if speaks_tls(host, port, 2.0):
                problem = errors.TLSFailed(f"{self._where} speaks TLS (its daemon was started with --tls-cert): "
                                           f"use https://{host}:{port}")
        return problem

    def _exchange(self, method: str, target: str, payload: bytes | None,
                  headers: dict[str, str]) -> tuple[int, bytes]:
        conn = self._conns.get()
        conn.request(method, target, body=payload, headers=headers)
        response = conn.getresponse()
        raw = response.read()
        self._saw_clock(response.getheader(NOW_HEADER))
        if response.will_close:
            self._conns.drop()
        return response.status, raw

    def close(self) -> None:
        if self._starter is not None:
            self._starter.flush()
        self._closing.set()
        conn = self._stream_conn
        if conn is not None and conn.sock is not None:
            try:
                conn.sock.shutdown(_socket.SHUT_RDWR)  # wakes the stream thread out of its blocking read
            except OSError:
                pass
        if self._stream is not None:
            self._stream.join(timeout=2.0)
        self._conns.close()

    # -- push stream ------------------------------------------------------------------------------
    def connect(self, group: str, pid: str, on_message: OnMessage,
                functions: dict[str, list[int]] | None = None, lease_ms: int | None = None) -> None:
        """Open the push stream (in its own thread, which reconnects by itself), announcing the functions
        this worker runs (and with ``lease_ms``, asking for its tasks claimed for it with that lease);
        Unreachable if it is not up within ``retry_for`` seconds."""
        if self._stream is not None:
            return
        self._pid, self._lease_ms = pid, lease_ms
        target = self._prefix + poll_path(group, pid, functions, lease_ms)
        self._stream = threading.Thread(target=self._listen, args=(target, on_message),
                                        name="resonate-poll", daemon=True)
        self._stream.start()
        self._stream_settled.wait(timeout=self.retry_for)
        if self._stream_error is not None:
            self._closing.set()
            raise self._stream_error
        if not self.connected.is_set():
            self._closing.set()
            raise errors.Unreachable(f"no resonate daemon answers at {self._where} (waited {self.retry_for:g} s "
                                     "for the push stream); start one with `resonate serve`")

    def _listen(self, target: str, on_message: OnMessage) -> None:
        delay = 0.05
        while not self._closing.is_set():
            conn = self._stream_conn = self._new(STREAM_CONNECT_TIMEOUT_S)
            try:
                conn.request("GET", target, headers={**self._headers, "Accept": "text/event-stream"})
                response = conn.getresponse()
                if response.status != 200:
                    raise errors.from_json(_json_or_none(response.read()), response.status)
                if conn.sock is not None:
                    conn.sock.settimeout(None)  # an idle stream is fine: the daemon pings it
                reconnect = self.connected.is_set()
                self.connected.set()
                self._stream_settled.set()
                delay = 0.05
                if reconnect:  # notifications sent while we were away are lost: let the runtime re-check
                    on_message(Message("connected", ""))
                self._read_events(response, on_message)
            except Exception as exc:
                if self._closing.is_set():
                    break
                problem = self._tls_problem(exc)
                if problem is not None and not self.connected.is_set():
                    self._stream_error = problem  # connect() raises it: retrying cannot fix a TLS mismatch
                    self._stream_settled.set()
                    break
                log.warning("push stream from %s lost (%s); reconnecting", self._where, problem or exc)
            finally:
                conn.close()
            if self._closing.wait(delay):
                break
            delay = min(delay * 2, RECONNECT_MAX_S)

    def _read_events(self, response: http.client.HTTPResponse, on_message: OnMessage) -> None:
        buffer = b""
        while True:
            chunk = response.read1(65536)
            if not chunk:
                return  # the daemon ended the stream
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.startswith(b"data:"):
                    self._dispatch(line[5:].strip(), on_message)

    def _dispatch(self, text: bytes, on_message: OnMessage) -> None:
        try:
            obj = json.loads(text)
            message = Message.from_json(obj)
            if isinstance(obj.get("claimed"), dict) and message.task is not None:  # claimed for us (lease_ms)
                self._saw_clock(str(obj["claimed"].get("now")))
                t = message.task
                claim = ClaimTask(t.id, t.counter, self._pid or "?", self._lease_ms or 1, graph=True)
                message = replace(message, claimed=claim.result(201, obj["claimed"]))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignored a push message I cannot read (%s): %.200r", exc, text)
            return
        on_message(message)

    # -- watching a call graph ---------------------------------------------------------------------
    def watch(self, id: str, notify: Callable[[], None]) -> Callable[[], None]:
        """The daemon's change events for the graph under ``id`` (``GET /v1/promises/{id}/watch``), read
        by a thread that reconnects by itself (and then calls ``notify``: changes may have been missed).
        PromiseNotFound at once if there is no such promise."""
        target = f"{self._prefix}/v1/promises/{urllib.parse.quote(id, safe='')}/watch"
        closing = threading.Event()
        first: list[BaseException | None] = []
        ready = threading.Event()
        holder: list[http.client.HTTPConnection] = []

        def run() -> None:
            delay = 0.05
            while not closing.is_set():
                conn = self._new(STREAM_CONNECT_TIMEOUT_S)
                holder[:] = [conn]
                try:
                    conn.request("GET", target, headers={**self._headers, "Accept": "text/event-stream"})
                    response = conn.getresponse()
                    if response.status != 200:
                        raise errors.from_json(_json_or_none(response.read()), response.status)
                    if conn.sock is not None:
                        conn.sock.settimeout(None)  # the daemon pings an idle stream
                    if ready.is_set():
                        notify()
                    else:
                        first.append(None)
                        ready.set()
                    delay = 0.05
                    while not closing.is_set():
                        line = response.readline()
                        if not line:
                            break
                        if line.startswith(b"data:"):
                            notify()
                except Exception as exc:
                    if not ready.is_set():
                        first.append(self._tls_problem(exc) or exc)
                        ready.set()
                        return
                    if closing.is_set():
                        return
                    log.warning("watch stream from %s lost (%s); reconnecting", self._where, exc)
                finally:
                    conn.close()
                if closing.wait(delay):
                    return
                delay = min(delay * 2, RECONNECT_MAX_S)

        thread = threading.Thread(target=run, name="resonate-watch", daemon=True)
        thread.start()

        def stop() -> None:
            closing.set()
            for conn in holder:
                if conn.sock is not None:
                    try:
                        conn.sock.shutdown(_socket.SHUT_RDWR)
                    except OSError:
                        pass
            thread.join(timeout=2.0)

        if not ready.wait(timeout=self.retry_for + STREAM_CONNECT_TIMEOUT_S):
            stop()
            raise errors.Unreachable(f"no resonate daemon answers at {self._where} (watching {id!r})")
        if first and first[0] is not None:
            stop()
            error = first[0]
            if isinstance(error, errors.ResonateError):
                raise error
            raise errors.Unreachable(f"no resonate daemon answers at {self._where}: {error}")
        return stop

    def __repr__(self) -> str:
        return f"<RemoteTransport {self._where}>"


def _permanent(data: Any) -> bool:
    """A 5xx that waiting will not cure: the daemon's database file is damaged or gone."""
    err = data.get("error") if isinstance(data, dict) else None
    return isinstance(err, dict) and err.get("code") in (errors.StoreCorrupt.code, errors.StoreGone.code)


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def probe(*, socket: str | None = None, url: str | None = None, token: str | None = None,
          ca_file: str | None = None, timeout: float = 2.0) -> Any:
    """The daemon's ``Status`` if one answers at the socket or URL within ``timeout``, else None. Raises
    ``TLSFailed`` when something answers but the TLS handshake says why we cannot talk to it."""
    from resonate_daemon.protocol import GetStatus

    where, _, _ = connection_factory(socket=socket, url=url, ca_file=ca_file)
    if not url and not os.path.exists(where):
        return None
    transport = RemoteTransport(socket=socket, url=url, token=token, ca_file=ca_file, retry_for=0, timeout=timeout)
    try:
        return transport.call(GetStatus())
    except (errors.UntrustedDaemon, errors.Forbidden, errors.TLSFailed):
        raise  # something answers, and it is not ours (or will not have us, or TLS fails): say so, never fall back
    except errors.ResonateError:
        return None
    finally:
        transport.close()
