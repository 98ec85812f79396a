"""TLS on TCP: ``serve --tls-cert/--tls-key`` makes the --http and --poll-port listeners speak https, and
clients (SDK and CLI) verify the daemon's certificate against a CA file.

Real processes: a daemon subprocess with a certificate made at test time by a throwaway CA
(tests/tls_certs.py, through the openssl command: skipped, saying so, without it), the CLI as a
subprocess, and this process as an SDK worker and client over https.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import pytest
from daemon_proc import Daemon, Stream, free_port
from resonate_daemon.protocol import GetStatus
from tls_certs import Certs, make_certs

from resonate import Context, Resonate
from resonate.errors import TLSFailed
from resonate.remote import RemoteTransport

CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("RESONATE_")}


@pytest.fixture(scope="module")
def certs() -> Iterator[Certs]:
    directory = tempfile.mkdtemp(prefix="rtls-", dir="/tmp")
    try:
        yield make_certs(directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def daemon(certs: Certs) -> Iterator[Daemon]:
    http, poll = free_port(), free_port()
    d = Daemon("--http", f"127.0.0.1:{http}", "--poll-port", str(poll),
               "--tls-cert", certs.cert, "--tls-key", certs.key).start()
    d.http_port, d.poll_port = http, poll  # type: ignore[attr-defined]
    yield d
    d.stop()
    d.cleanup()


@pytest.fixture(autouse=True)
def no_resonate_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [k for k in os.environ if k.startswith("RESONATE_")]:
        monkeypatch.delenv(name)  # an RESONATE_CA_FILE of the machine must not make a test pass


def url(daemon: Daemon, scheme: str = "https") -> str:
    return f"{scheme}://127.0.0.1:{daemon.http_port}"  # type: ignore[attr-defined]


def token(daemon: Daemon) -> str:
    with open(f"{daemon.db}.token") as f:
        return f.read().strip()


def cli(daemon: Daemon, *args: str, scheme: str = "https", env: dict[str, str] | None = None,
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "resonate_cli", "--url", url(daemon, scheme),
                           "--token-file", f"{daemon.db}.token", *args],
                          env={**CLEAN_ENV, **(env or {})}, capture_output=True, text=True, timeout=60)


def double(ctx: Context, n: int) -> int:
    return n * 2


def add_doubled(ctx: Context, a: int, b: int) -> int:
    x = yield ctx.run(double, a)
    y = yield ctx.run(double, b)
    return x + y


def test_an_sdk_worker_and_client_run_a_workflow_over_https(daemon: Daemon, certs: Certs) -> None:
    client = Resonate.remote("tls", url=url(daemon), token=token(daemon), ca_file=certs.ca, retry_for=10)
    wf = client.register(add_doubled)
    client.register(double)
    client.start()  # the push stream over TLS too: the worker learns of its task through it
    try:
        assert wf.run("tls-wf-1", 2, 3) == 10
        assert client.promises.get("tls-wf-1").state == "RESOLVED"
    finally:
        client.stop()


def test_the_sdk_refuses_a_certificate_it_does_not_trust_at_once(daemon: Daemon, certs: Certs) -> None:
    for ca_file in (None, certs.other_ca):
        started = time.monotonic()
        client = Resonate.remote("tls", url=url(daemon), token=token(daemon), ca_file=ca_file, retry_for=20)
        with pytest.raises(TLSFailed, match="does not trust.*ca_file"):
            client.promises.get("anything")
        with pytest.raises(TLSFailed, match="does not trust"):
            client.start()
        client.stop()
        assert time.monotonic() - started < 10  # not retried for retry_for: waiting cannot fix it


def test_the_cli_talks_https_with_the_ca_and_says_what_is_missing_without_it(daemon: Daemon, certs: Certs) -> None:
    ok = cli(daemon, "--ca-file", certs.ca, "promises", "list", "--json")
    assert ok.returncode == 0, ok.stderr
    assert "promises" in ok.stdout
    assert cli(daemon, "status", env={"RESONATE_CA_FILE": certs.ca}).returncode == 0
    for args in ((), ("--ca-file", certs.other_ca)):
        refused = cli(daemon, *args, "promises", "list")
        assert refused.returncode == 4, refused.stderr  # daemon unreachable, as --help lists
        assert "does not trust" in refused.stderr and "--ca-file" in refused.stderr
        assert "Traceback" not in refused.stderr
    missing = cli(daemon, "--ca-file", "/nonexistent/ca.pem", "status")
    assert missing.returncode == 2 and "cannot load CA file" in missing.stderr


def test_plain_http_to_the_tls_port_says_to_use_https(daemon: Daemon, certs: Certs) -> None:
    r = cli(daemon, "promises", "list", scheme="http")
    assert r.returncode == 4 and f"use https://127.0.0.1:{daemon.http_port}" in r.stderr, r.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in r.stderr
    t = RemoteTransport(url=url(daemon, "http"), token=token(daemon), retry_for=20)
    started = time.monotonic()
    try:
        with pytest.raises(TLSFailed, match="speaks TLS"):
            t.call(GetStatus())
    finally:
        t.close()
    assert time.monotonic() - started < 10


def test_https_to_a_plain_listener_says_it_does_not_serve_tls(certs: Certs) -> None:
    port = free_port()
    plain = Daemon("--http", f"127.0.0.1:{port}").start()
    try:
        r = subprocess.run([sys.executable, "-m", "resonate_cli", "--url", f"https://127.0.0.1:{port}",
                            "--token-file", f"{plain.db}.token", "--ca-file", certs.ca, "status"],
                           env=CLEAN_ENV, capture_output=True, text=True, timeout=60)
        assert r.returncode == 4 and "does it serve TLS?" in r.stderr and "http://" in r.stderr, r.stderr
    finally:
        plain.stop()
        plain.cleanup()


def test_the_poll_port_speaks_tls(daemon: Daemon, certs: Certs) -> None:
    port = daemon.poll_port  # type: ignore[attr-defined]
    context = ssl.create_default_context(cafile=certs.ca)
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    stream = Stream(context.wrap_socket(raw, server_hostname="127.0.0.1"), "/legacy/w1",
                    {"authorization": f"Bearer {token(daemon)}"})
    stream.close()
    assert stream.status == 200
    with socket.create_connection(("127.0.0.1", port), timeout=10) as plain:
        plain.sendall(b"GET /legacy/w1 HTTP/1.1\r\nHost: resonate\r\n\r\n")
        assert not plain.recv(65536).startswith(b"HTTP/")  # plain HTTP gets no answer on a TLS port


@pytest.mark.parametrize("case", ["mismatched key", "missing cert", "key as cert", "encrypted key"])
def test_a_certificate_or_key_that_cannot_be_loaded_stops_the_start(certs: Certs, short_dir: str, case: str) -> None:
    cert, key = certs.cert, certs.key
    if case == "mismatched key":
        key = os.path.join(os.path.dirname(certs.other_ca), "other-ca.key")
    elif case == "missing cert":
        cert = os.path.join(short_dir, "nope.pem")
    elif case == "key as cert":
        cert = certs.key
    else:
        key = os.path.join(short_dir, "encrypted.key")
        subprocess.run(["openssl", "pkey", "-in", certs.key, "-out", key, "-aes256", "-passout", "pass:pw"],
                       check=True, capture_output=True, timeout=60)
    args = ["--socket", os.path.join(short_dir, "d.sock"), "--db", os.path.join(short_dir, "r.db"),
            "--http", "0", "--tls-cert", cert, "--tls-key", key]
    # stdin closed: an encrypted key must be refused, not prompted for
    r = subprocess.run([sys.executable, "-m", "resonate_daemon", *args], env=CLEAN_ENV, capture_output=True,
                       text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 3, r.stderr  # EXIT_STARTUP_FAILURE
    assert "cannot load TLS certificate" in r.stderr and "Traceback" not in r.stderr
    if case == "encrypted key":
        assert "encrypted" in r.stderr
    assert not os.path.exists(os.path.join(short_dir, "d.sock"))  # refused before anything was bound
    # `resonate serve` says the same; its exit code is the CLI's "error" (its 3 means "not found")
    r = subprocess.run([sys.executable, "-m", "resonate_cli", "serve", *args], env=CLEAN_ENV,
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 1 and "cannot start: cannot load TLS certificate" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_half_a_tls_pair_or_tls_without_tcp_is_a_usage_error(certs: Certs, short_dir: str) -> None:
    base = [sys.executable, "-m", "resonate_daemon", "--socket", os.path.join(short_dir, "d.sock"),
            "--db", os.path.join(short_dir, "r.db")]
    for extra, says in ((["--http", "0", "--tls-cert", certs.cert], "give both --tls-cert and --tls-key"),
                        (["--http", "0", "--tls-key", certs.key], "give both --tls-cert and --tls-key"),
                        (["--tls-cert", certs.cert, "--tls-key", certs.key], "give --http")):
        r = subprocess.run([*base, *extra], env=CLEAN_ENV, capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and says in r.stderr, r.stderr
    r = subprocess.run([sys.executable, "-m", "resonate_cli", "serve", "--http", "0", "--tls-key", certs.key],
                       env=CLEAN_ENV, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "give both --tls-cert and --tls-key" in r.stderr, r.stderr
