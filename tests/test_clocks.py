"""Clocks: the daemon's leases and timers ignore wall-clock steps, and a worker's deadlines are on the
daemon's clock, not its own.

- ``MonotonicClock`` (the engine's clock) moves with the monotonic clock: a wall clock stepped back ten
  minutes neither freezes lease expiry nor timers (was: frozen for ten minutes), and one stepped forward
  does not fire them all at once.
- A worker whose clock is an hour behind (a real process, its ``time.time`` skewed) sleeps the 2 s its
  workflow asked for: the timer's deadline is the daemon's now + 2 s (was: an hour in the past, so the
  sleep returned at once).
"""

from __future__ import annotations

import os
import subprocess
import sys

from resonate_daemon.clock import MonotonicClock
from resonate_daemon.core.engine import Engine
from resonate_daemon.protocol import ClaimTask, CreatePromise
from resonate_daemon.protocol.records import INIT, TAG_INVOKE, Value
from resonate_daemon.store import open_store

from resonate import Resonate
from tests.daemon_proc import Daemon

PROGRAM = os.path.join(os.path.dirname(__file__), "programs", "time_workflows.py")
MIN = 60_000


class Steppable:
    """A wall clock and a monotonic clock a test moves by hand (ns, like time.time_ns/monotonic_ns)."""

    def __init__(self) -> None:
        self.wall_ns = 1_800_000_000_000 * 1_000_000
        self.mono_ns = 5_000 * 1_000_000

    def step_wall(self, ms: int) -> None:
        self.wall_ns += ms * 1_000_000  # an admin or NTP: the monotonic clock does not move

    def elapse(self, ms: int) -> None:
        self.wall_ns += ms * 1_000_000
        self.mono_ns += ms * 1_000_000


def test_the_clock_ignores_wall_steps_while_it_runs() -> None:
    t = Steppable()
    clock = MonotonicClock(wall=lambda: t.wall_ns, mono=lambda: t.mono_ns)
    start = clock.now()
    assert start == t.wall_ns // 1_000_000
    t.step_wall(-10 * MIN)
    assert clock.now() == start
    t.elapse(1_500)
    assert clock.now() == start + 1_500
    t.step_wall(+60 * MIN)
    assert clock.now() == start + 1_500


def test_a_lease_still_expires_after_the_wall_clock_steps_back() -> None:
    t = Steppable()
    engine = Engine(open_store(":memory:"), MonotonicClock(wall=lambda: t.wall_ns, mono=lambda: t.mono_ns))
    engine.create_promise(CreatePromise("wf", engine.clock.now() + 60 * MIN, Value({}, "e30="),
                                        {TAG_INVOKE: "poll://any@g/p1"}, idempotency_key="wf"))
    engine.claim_task(ClaimTask("__invoke:wf", 1, "p1", 1_000))
    t.step_wall(-10 * MIN)  # the host's clock jumps back ten minutes
    t.elapse(1_500)  # and one and a half seconds pass
    engine.tick()
    after = engine.store.get_task("__invoke:wf")
    assert after is not None and (after.state, after.counter) == (INIT, 2)  # the lapsed lease was taken back


def test_a_worker_whose_clock_is_an_hour_behind_sleeps_on_the_daemons_time() -> None:
    daemon = Daemon().start()
    worker = None
    client = None
    try:
        worker = subprocess.Popen([sys.executable, PROGRAM, "worker", "--socket", daemon.socket, "--group",
                                   "skewed", "--skew", "-3600"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert worker.stdout is not None and worker.stdout.readline().strip() == b"ready"
        client = Resonate.remote(group="client", socket=daemon.socket)
        handle = client.options(target="poll://any@skewed").begin_rpc("nap-skew", "nap", 2.0)
        handle.result(timeout=30)
        with daemon.client() as c:
            sleep = c.get("/promises/nap-skew.1").json()
        assert 1_500 <= sleep["timeout"] - sleep["createdOn"] <= 3_000, sleep  # was: about -3,600,000
        assert sleep["state"] in ("RESOLVED", "REJECTED_TIMEDOUT")
    finally:
        if client is not None:
            client.stop()
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=30)
            worker.stdout.close()  # type: ignore[union-attr]
        daemon.stop()
        daemon.cleanup()
