"""Concurrent completion: 16 clients race to resolve, reject and cancel the same 1,000 promises.

Each client is a thread with its own connection to the daemon's Unix socket; all walk the promises in
the same order behind a barrier, so every promise sees 16 near-simultaneous PATCHes with a random target
state, idempotency key (two keys, or none) and strictness. The recorded history (each request, its
status, the returned state or error code) must check out against a sequential model: the transition
table itself (resonate_daemon.core.transitions.promise_transition), replaying the one winner (201) first and then
each loser, which must get the status and code the table gives for the completed promise (PROTOCOL.md:
200 with the same key, 403 by the current state otherwise; docs/protocol-deviations.md point 2).
"""

from __future__ import annotations

import base64
import dataclasses
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from daemon_proc import FAR, Daemon
from resonate_daemon.core.transitions import Complete
from resonate_daemon.core.transitions import promise_transition as transition
from resonate_daemon.protocol.records import Promise, Value

CLIENTS = 16
PROMISES = 1000
STATES = ("RESOLVED", "REJECTED", "REJECTED_CANCELED")
KEYS = ("k1", "k2", None)


@dataclasses.dataclass(frozen=True)
class Attempt:
    client: int
    promise: str
    state: str
    ikey: str | None
    strict: bool
    status: int = 0
    body: Any = None


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    d = Daemon().start()
    yield d
    d.stop()
    d.cleanup()


def data(client: int, promise: str) -> str:
    return base64.b64encode(f"{client}:{promise}".encode()).decode()


def race(daemon: Daemon, client: int, ids: list[str], seed: int, barrier: threading.Barrier,
         out: list[Attempt], pending: dict[str, Promise]) -> None:
    rng = random.Random(seed * 100 + client)
    with daemon.client(timeout=60) as c:
        for id in ids[client::CLIENTS]:  # each client creates its share, then all race on all of them
            r = c.post("/promises", json={"id": id, "timeout": FAR})
            assert r.status_code == 201
            pending[id] = Promise.from_json(r.json())
        barrier.wait()
        for id in ids:
            a = Attempt(client, id, rng.choice(STATES), rng.choice(KEYS), rng.random() < 0.5)
            headers = {"strict": "true" if a.strict else "false"}
            if a.ikey is not None:
                headers["idempotency-key"] = a.ikey
            r = c.patch(f"/promises/{id}", headers=headers,
                        json={"state": a.state, "value": {"data": data(client, id)}})
            out.append(dataclasses.replace(a, status=r.status_code, body=r.json()))


def test_one_winner_per_promise_and_the_history_matches_the_table(daemon: Daemon) -> None:
    seed = random.SystemRandom().randrange(2**32)
    run = f"race-{seed}"
    ids = [f"{run}-{n}" for n in range(PROMISES)]
    pending: dict[str, Promise] = {}
    histories: list[list[Attempt]] = [[] for _ in range(CLIENTS)]
    barrier = threading.Barrier(CLIENTS)
    threads = [threading.Thread(target=race, args=(daemon, n, ids, seed, barrier, histories[n], pending))
               for n in range(CLIENTS)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    elapsed = time.monotonic() - started
    assert len(pending) == PROMISES, f"seed {seed}: a client failed to create its promises"
    history = [a for h in histories for a in h]
    assert len(history) == CLIENTS * PROMISES, f"seed {seed}: a client did not finish"
    assert all(a.status < 500 for a in history), f"seed {seed}: 5xx in {[a for a in history if a.status >= 500][:3]}"

    by_promise: dict[str, list[Attempt]] = {id: [] for id in ids}
    for a in history:
        by_promise[a.promise].append(a)
    with daemon.client() as c:
        final = {id: c.get(f"/promises/{id}").json() for id in ids}
    now = int(time.time() * 1000)
    counts = {200: 0, 403: 0}
    for id, attempts in by_promise.items():
        winners = [a for a in attempts if a.status == 201]
        assert len(winners) == 1, f"seed {seed}: {id} has {len(winners)} winners: {winners}"
        w = winners[0]
        # The model: the winner's request on the pending promise, then each loser on the result.
        verdict = transition(pending[id], Complete(w.state, w.ikey, w.strict), now)
        assert (verdict.status, verdict.write, verdict.state) == (201, "complete", w.state)
        done = dataclasses.replace(pending[id], state=w.state, idempotency_key_for_complete=w.ikey,
                                   value=Value(data=data(w.client, id)))
        assert w.body["state"] == w.state and w.body["value"]["data"] == data(w.client, id)
        assert final[id]["state"] == w.state and final[id]["value"]["data"] == data(w.client, id), \
            f"seed {seed}: the stored outcome of {id} is not the winner's"
        assert final[id].get("idempotencyKeyForComplete") == w.ikey
        for a in attempts:
            if a is w:
                continue
            expect = transition(done, Complete(a.state, a.ikey, a.strict), now)
            assert a.status == expect.status, f"seed {seed}: {a} after winner {w}: table says {expect}"
            counts[a.status] += 1
            if expect.error is not None:
                assert a.body["error"]["code"] == expect.error.code and a.body["error"]["message"]
            else:  # 200: the completed promise, unchanged (the winner's state and value)
                assert a.body["state"] == w.state and a.body["value"]["data"] == data(w.client, id)
    assert counts[200] > 0 and counts[403] > 0  # both outcomes exercised
    print(f"\n{len(history)} racing completions (and the creates) in {elapsed:.1f}s: {PROMISES} winners, "
          f"{counts[200]} deduplicated (200), {counts[403]} refused (403)")
