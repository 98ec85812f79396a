"""Test helpers: a real daemon subprocess on a real Unix socket, an httpx client, a raw SSE reader.

Not collected by pytest (no ``test_`` prefix). Readiness is awaited by polling ``GET /ping`` with a
deadline, never by sleeping a guessed time.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

import httpx

FAR = 4_102_444_800_000  # 2100-01-01 in ms: a timeout that never fires during a test


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Daemon:
    """``python -m resonate_daemon`` in a short temp dir (AF_UNIX paths stop at 108 bytes)."""

    def __init__(self, *args: str, dir: str | None = None, db: str | None = None) -> None:
        self.dir = dir or tempfile.mkdtemp(dir="/tmp", prefix="rd-")
        self.socket = os.path.join(self.dir, "run", "d.sock")
        self.db = db or os.path.join(self.dir, "r.db")
        self.args = list(args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = os.path.join(self.dir, "daemon.log")
        self.preexec_fn: Any = None  # e.g. lower the daemon's RLIMIT_NOFILE, or drop to another uid
        # What runs it; ["-m", "resonate_cli", "serve"] for a daemon with the browser UI (only the CLI hands
        # the UI to the daemon: the daemon never imports it).
        self.command = ["-m", "resonate_daemon"]

    def spawn(self) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, *self.command, "--socket", self.socket, "--db", self.db, *self.args]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, preexec_fn=self.preexec_fn)
        return self.proc

    def start(self, timeout: float = 10.0) -> Daemon:
        self.spawn()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 10.0) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}: {self.stderr()}")
            if self._accepting():  # probed raw first: httpx leaks a socket when a UDS connect fails
                with self.client(timeout=5.0) as c:
                    if c.get("/ping").status_code == 200:
                        return
            time.sleep(0.02)  # a poll interval, not a synchronisation guess: the loop is bounded by the deadline
        raise TimeoutError(f"daemon not ready after {timeout}s: {self.stderr()}")

    def _accepting(self) -> bool:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            try:
                s.connect(self.socket)
            except OSError:
                return False
        return True

    def client(self, timeout: float = 10.0) -> httpx.Client:
        return httpx.Client(transport=httpx.HTTPTransport(uds=self.socket), base_url="http://resonate",
                            timeout=timeout)

    def stderr(self) -> str:
        with open(self.log, errors="replace") as f:
            return f.read()

    def signal(self, sig: int) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.signal(signal.SIGTERM)

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


class Stream:
    """A push stream read straight off a socket, so a test can cut it like a crashed worker would."""

    def __init__(self, sock: socket.socket, path: str, headers: dict[str, str] | None = None) -> None:
        self.sock = sock
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: resonate\r\n{extra}\r\n".encode())
        self.buf = b""
        self.status = int(self._until(b"\r\n\r\n").split(b" ", 2)[1])

    @classmethod
    def unix(cls, socket_path: str, group: str, pid: str) -> Stream:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10)
        sock.connect(socket_path)
        return cls(sock, f"/poll/{group}/{pid}")

    @classmethod
    def tcp(cls, port: int, path: str, headers: dict[str, str] | None = None) -> Stream:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        return cls(sock, path, headers)

    def _until(self, marker: bytes) -> bytes:
        while marker not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("stream closed")
            self.buf += chunk
        head, _, self.buf = self.buf.partition(marker)
        return head

    def next(self) -> dict[str, Any]:
        """The next ``data:`` message (comments and chunk framing skipped); socket timeout bounds it."""
        while True:
            line = self._until(b"\n").strip()
            if line.startswith(b"data: "):
                return dict(json.loads(line[6:]))

    def next_comment(self) -> bytes:
        while True:
            line = self._until(b"\n").strip()
            if line.startswith(b":"):
                return line

    def close(self) -> None:
        self.sock.close()


def raw_ping(path: str, timeout: float = 5.0) -> tuple[int, float, float]:
    """``GET /ping`` over the Unix socket on a fresh raw connection: (status, started, ended) on the
    monotonic clock, bounded by ``timeout`` (for checks and benches that must not lean on httpx)."""
    started = time.monotonic()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(b"GET /ping HTTP/1.1\r\nHost: r\r\nConnection: close\r\n\r\n")
        head = s.recv(4096)
    return int(head.split(b" ", 2)[1]), started, time.monotonic()


def slowloris(port: int, n: int) -> list[socket.socket]:
    """``n`` TCP connections to 127.0.0.1:``port``, each sending a request that never ends. Connections
    the daemon refuses (over its cap) or the kernel has not completed yet are kept too: a flood."""
    flood: list[socket.socket] = []
    for _ in range(n):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        flood.append(s)
    for s in flood:
        try:
            s.send(b"GET /ping HTTP/1.1\r\nHost: r\r\nX-Slow: ")
        except OSError:
            pass
    return flood
