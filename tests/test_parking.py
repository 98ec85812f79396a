"""A short sleep waits in the worker (parked), holding its task, instead of suspending (resonate/parking.py).

Real processes: a daemon on a Unix socket and worker subprocesses (tests/programs/remote_app.py, lease 2 s).
Parked, a sleep costs no suspension and no resume: the workflow's only task is its invoke task. A worker
SIGKILLed while parked loses nothing: the step before the sleep was stored before it parked, and another
worker takes the task when the lease lapses and finishes the workflow without running that step again.
"""

from __future__ import annotations

import os
import signal
import tempfile
import uuid
from collections.abc import Iterator

import pytest

from resonate import Resonate
from tests.daemon_proc import Daemon
from tests.test_remote_workers import Cluster, wait_for

WAIT = 30.0


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    d = Daemon().start()
    c = Cluster(d, f"park-{uuid.uuid4().hex[:6]}")
    yield c
    c.stop()
    d.stop()
    d.cleanup()


def lines(path: str) -> list[tuple[int, int]]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [(int(a), int(b)) for a, b in (line.split() for line in f if line.strip())]


def test_a_short_sleep_parks_and_costs_no_suspension(cluster: Cluster) -> None:
    cluster.add_worker()
    side = tempfile.mktemp(prefix="park-", dir="/tmp")
    client = Resonate.remote(group="park-client", socket=cluster.daemon.socket)
    try:
        assert client.options(target=cluster.group).rpc("nap-1", "napper", 0.3, side) == [0, 1]
        with cluster.daemon.client() as c:
            tasks = [t for t in c.get("/v1/tasks", params={"limit": 1000}).json()["tasks"]
                     if t["rootPromiseId"] == "nap-1"]
            sleep = c.get("/promises/nap-1.2").json()
        assert [t["id"] for t in tasks] == ["__invoke:nap-1"]  # no resume task: it never suspended
        assert sleep["tags"]["resonate:timeout"] == "true" and sleep["timeout"] > sleep["createdOn"]
    finally:
        client.stop()


def test_a_worker_killed_while_parked_loses_nothing(cluster: Cluster) -> None:
    first = cluster.add_worker()
    second = cluster.add_worker()
    side = tempfile.mktemp(prefix="park-", dir="/tmp")
    client = Resonate.remote(group="park-client", socket=cluster.daemon.socket)
    try:
        handle = client.options(target=cluster.group).begin_rpc("nap-2", "napper", 1.5, side)
        ran = wait_for(lambda: lines(side), WAIT, "the step before the sleep")
        holder = first if ran[0][1] == first.pid else second
        other = second if holder is first else first
        holder.send_signal(signal.SIGKILL)  # parked in its sleep (1.5 s), holding the task
        holder.wait()
        assert handle.result(timeout=WAIT) == [0, 1]
        assert lines(side) == [(0, holder.pid), (1, other.pid)]  # the first step did not run again
    finally:
        client.stop()
