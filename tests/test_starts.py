"""Starting many workflows from one client (resonate/starts.py) against a real daemon on a Unix socket.

``begin_rpc`` returns at once; the starts go in the background, batched: what queued while one request
was on its way goes in the next (``StartMany``). The first request is held by the test until every
start is queued, so the batching is decided by the test, not by timing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from resonate import Context, Resonate
from resonate.errors import PromiseAlreadyExists
from tests.daemon_proc import Daemon

WAIT = 30.0


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    d = Daemon().start()
    yield d
    d.stop()
    d.cleanup()


@pytest.fixture
def worker(daemon: Daemon) -> Iterator[Resonate]:
    w = Resonate.remote(group="starts", socket=daemon.socket)

    @w.register
    def double(ctx: Context, x: int) -> int:
        return 2 * x

    w.start()
    yield w
    w.stop()


class HeldFirst:
    """Records every request the client's transport sends; holds the first until ``release``."""

    def __init__(self, r: Resonate) -> None:
        transport = r._transport
        self.sent: list[tuple[str, int]] = []
        self.gate = threading.Event()
        self.entered = threading.Event()
        real = transport._call  # type: ignore[attr-defined]

        def call(op: Any, fence: Any = None) -> Any:
            name = type(op).__name__
            self.sent.append((name, len(op.starts) if name == "StartMany" else 1))
            if len(self.sent) == 1:
                self.entered.set()
                assert self.gate.wait(WAIT), "the test never released the first start"
            return real(op, fence)

        transport._call = call  # type: ignore[attr-defined]


def test_a_loop_of_begin_rpc_makes_two_requests_and_every_handle_gets_its_answer(daemon: Daemon,
                                                                                 worker: Resonate) -> None:
    client = Resonate.remote(group="starts-client", socket=daemon.socket)
    try:
        client.promises.create("s-taken", ikey="someone-else")  # a start that must fail alone
        held = HeldFirst(client)
        target = client.options(target="starts")
        handles = [target.begin_rpc(f"s-{i}", "double", i) for i in range(300)]
        taken = target.begin_rpc("s-taken", "double", 0)
        assert held.entered.wait(WAIT)
        assert not any(h.done() for h in handles)  # nothing answered while the first start is held
        held.gate.set()
        assert [h.result(timeout=WAIT) for h in handles] == [2 * i for i in range(300)]
        with pytest.raises(PromiseAlreadyExists):
            taken.result(timeout=WAIT)
        # What the starter had when it sent its first request went then (alone, or the few queued by the
        # time its thread ran); everything queued behind that went as one batch: two requests in all.
        assert len(held.sent) == 2 and held.sent[1][0] == "StartMany"
        assert held.sent[0][1] + held.sent[1][1] == 301
    finally:
        client.stop()


def test_no_request_overtakes_the_starts_before_it(daemon: Daemon, worker: Resonate) -> None:
    client = Resonate.remote(group="starts-client", socket=daemon.socket)
    try:
        target = client.options(target="starts")
        handles = [target.begin_rpc(f"r-{i}", "double", i) for i in range(50)]
        # Read at once, from this thread: the read waits for the starts queued before it.
        assert client.promises.get("r-49").id == "r-49"
        assert handles[49].result(timeout=WAIT) == 98
    finally:
        client.stop()


def test_starts_queued_when_the_client_stops_are_sent(daemon: Daemon, worker: Resonate) -> None:
    client = Resonate.remote(group="starts-client", socket=daemon.socket)
    target = client.options(target="starts")
    for i in range(20):
        target.begin_rpc(f"q-{i}", "double", i)
    client.stop()  # returns once they are sent
    reader = Resonate.remote(group="starts-reader", socket=daemon.socket)
    try:
        assert reader.get("q-19").result(timeout=WAIT) == 38
    finally:
        reader.stop()
