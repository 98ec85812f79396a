"""Remote workers in a group against a real daemon: load sharing, and recovery from SIGKILL.

Real processes throughout: a daemon subprocess on a Unix socket with a SQLite file, worker subprocesses
(tests/programs/remote_app.py), and this process as the client (``Resonate.remote``).
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest

from resonate import Resonate
from tests.daemon_proc import Daemon

APP = os.path.join(os.path.dirname(__file__), "programs", "remote_app.py")


def wait_for(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)  # polling interval of a bounded wait
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


class Cluster:
    def __init__(self, daemon: Daemon, group: str) -> None:
        self.daemon = daemon
        self.group = group
        self.workers: list[subprocess.Popen[bytes]] = []

    def add_worker(self) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([sys.executable, APP, self.daemon.socket, self.group],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        self.workers.append(proc)
        return proc

    def connected(self) -> int:
        with self.daemon.client() as c:
            return len(c.get("/v1/status").json()["workers"].get(self.group, []))

    def stop(self) -> None:
        for w in self.workers:
            if w.poll() is None:
                w.kill()
            w.wait()
            if w.stdout is not None:
                w.stdout.close()


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    daemon = Daemon().start()
    c = Cluster(daemon, "workers")
    try:
        yield c
    finally:
        c.stop()
        daemon.stop()
        daemon.cleanup()


def client(daemon: Daemon) -> Resonate:
    return Resonate.remote(group="client", socket=daemon.socket)


def test_three_workers_share_sixty_invocations(cluster: Cluster) -> None:
    for _ in range(3):
        cluster.add_worker()
    wait_for(lambda: cluster.connected() == 3, 10, "3 connected workers")
    r = client(cluster.daemon)
    try:
        target = r.options(target="poll://any@workers")
        run = uuid.uuid4().hex[:6]
        handles = [target.begin_rpc(f"c-{run}-{i}", "compute", i) for i in range(60)]
        results = [h.result(timeout=30) for h in handles]
    finally:
        r.stop()
    assert [x["square"] for x in results] == [i * i for i in range(60)]
    shares = collections.Counter(x["worker"] for x in results)
    assert set(shares) == {w.pid for w in cluster.workers}, shares


def test_recursive_rpc_across_workers(cluster: Cluster) -> None:
    for _ in range(2):
        cluster.add_worker()
    wait_for(lambda: cluster.connected() == 2, 10, "2 connected workers")
    r = client(cluster.daemon)
    try:
        assert r.options(target="poll://any@workers").rpc("fact-12", "factorial", 12) == 479001600
    finally:
        r.stop()


def read_steps(side: str) -> list[tuple[int, int]]:
    if not os.path.exists(side):
        return []
    with open(side) as f:
        return [tuple(map(int, line.split())) for line in f if line.strip()]  # type: ignore[misc]


def test_sigkill_of_the_worker_holding_an_execution(cluster: Cluster) -> None:
    first = cluster.add_worker()
    wait_for(lambda: cluster.connected() == 1, 10, "the first worker")
    side = os.path.join(cluster.daemon.dir, "side.txt")
    r = client(cluster.daemon)
    try:
        handle = r.options(target="poll://any@workers").begin_rpc("steps-kill", "steps", 25, side)
        wait_for(lambda: len(read_steps(side)) >= 8, 20, "8 steps on the first worker")
        cluster.add_worker()  # the survivor connects only now: the execution is surely on the first
        wait_for(lambda: cluster.connected() == 2, 10, "the second worker")
        killed_at = time.monotonic()
        done_before = len(read_steps(side))
        os.kill(first.pid, signal.SIGKILL)
        wait_for(lambda: any(pid != first.pid for _, pid in read_steps(side)), 20, "a step on the survivor")
        recovery = time.monotonic() - killed_at
        assert handle.result(timeout=30) == sum(range(25))
    finally:
        r.stop()
    steps = read_steps(side)
    counts = collections.Counter(i for i, _ in steps)
    assert sorted(counts) == list(range(25))
    # Steps completed before the kill ran once; at most the one in flight ran twice.
    twice = [i for i, n in counts.items() if n > 1]
    assert len(twice) <= 1 and all(i >= done_before - 1 for i in twice), counts
    print(f"\nrecovery after SIGKILL: {recovery * 1000:.0f} ms (includes one 40 ms step)")


def test_sigkill_of_the_daemon_mid_flight(cluster: Cluster) -> None:
    for _ in range(2):
        cluster.add_worker()
    wait_for(lambda: cluster.connected() == 2, 10, "2 workers")
    side = os.path.join(cluster.daemon.dir, "side.txt")
    r = client(cluster.daemon)
    try:
        target = r.options(target="poll://any@workers")
        handles = [target.begin_rpc(f"d-{i}", "steps", 10, f"{side}.{i}") for i in range(4)]
        acked = [f"d-{i}" for i in range(4)]
        wait_for(lambda: any(read_steps(f"{side}.{i}") for i in range(4)), 20, "work under way")
        cluster.daemon.signal(signal.SIGKILL)
        cluster.daemon.start()
        results = [h.result(timeout=60) for h in handles]
        assert results == [sum(range(10))] * 4
        for pid in acked:
            assert r.promises.get(pid).state == "RESOLVED"
    finally:
        r.stop()


def test_resonate_remote_finds_the_daemon_like_the_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    """RESONATE_SOCKET is where Resonate.remote() looks when given nothing (as the CLI does)."""
    daemon = Daemon().start()
    try:
        monkeypatch.setenv("RESONATE_SOCKET", daemon.socket)
        monkeypatch.delenv("RESONATE_URL", raising=False)
        r = Resonate.remote(group="env-found")
        try:
            assert r.where == daemon.socket and r.status().mode == "daemon"
        finally:
            r.stop()
    finally:
        daemon.stop()
        daemon.cleanup()


def test_start_fails_clearly_when_nothing_answers(short_dir: str) -> None:
    from resonate import Unreachable

    r = Resonate.remote(group="nobody", socket=os.path.join(short_dir, "none.sock"), retry_for=0.3)
    started = time.monotonic()
    with pytest.raises(Unreachable, match="no resonate daemon answers at .*none.sock"):
        r.start()
    assert time.monotonic() - started < 5
    r.stop()  # stopping what failed to start is harmless
