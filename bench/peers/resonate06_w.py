"""Benchmark peer: the official Resonate Python SDK 0.6.7 in local mode.

    bench/.venvs/resonate06/bin/python bench/peers/resonate06_w.py --workload W1 \
        [--n 2000] [--quick]

(make the venv first: ``python bench/peers/venvs.py resonate06``). Runs ONE of the
workloads W1-W6 of shared/BENCHMARKS.md and prints one JSON line (see common.py).

``Resonate.local()`` keeps promises and tasks in memory (``LocalStore``): nothing is
durable, so after the W6 SIGKILL the workflow starts over and every step re-runs.
The per-process temp dir holds only the W6 side file.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

SYSTEM = "resonate-sdk-0.6.7"

try:
    import resonate
    from resonate import Context, Resonate

    # This repo's own package is also called `resonate`: make sure we measure the SDK.
    if "site-packages" not in (resonate.__file__ or ""):
        raise ImportError(f"`resonate` is {resonate.__file__}, not the resonate-sdk package")
except ImportError as exc:
    common.import_failed(SYSTEM, "resonate06", exc)


def new_resonate() -> Resonate:
    # WARNING: its INFO logs would go to stderr for every call; keep them quiet.
    r = Resonate.local(log_level=logging.WARNING)
    r.start()
    return r


def step_inc(ctx: Context, i: int) -> int:
    return i + 1


def w1(n: int, store: Path) -> dict[str, Any]:
    r = new_resonate()

    @r.register
    def chain(ctx: Context, n: int):  # type: ignore[no-untyped-def]
        x = 0
        for _ in range(n):
            x = yield ctx.run(step_inc, x)
        return x

    t0 = time.perf_counter()
    got = chain.run("w1", n)
    ms = common.ms_since(t0)
    assert got == n, got
    return common.w1_fields(n, ms)


def w2(n: int, store: Path) -> dict[str, Any]:
    r = new_resonate()

    @r.register
    def one(ctx: Context, i: int):  # type: ignore[no-untyped-def]
        x = yield ctx.run(step_inc, i)
        return x

    per_wf: list[float] = []
    t0 = time.perf_counter()
    for i in range(n):
        t = time.perf_counter()
        got = one.run(f"w2.{i}", i)
        per_wf.append(common.ms_since(t))
        assert got == i + 1, got
    return common.w2_fields(per_wf, common.ms_since(t0))


def w3(n: int, store: Path) -> dict[str, Any]:
    r = new_resonate()

    @r.register
    def fact(ctx: Context, k: int):  # type: ignore[no-untyped-def]
        if k <= 1:
            return 1
        # ctx.run of a registered generator function: a durable child execution.
        sub = yield ctx.run(fact, k - 1)
        return k * sub

    t0 = time.perf_counter()
    got = fact.run("w3", n)
    ms = common.ms_since(t0)
    return {"ms_total": ms, **common.check_factorial(n, got)}


def w4(n: int, store: Path) -> dict[str, Any]:
    r = new_resonate()

    @r.register
    def fan(ctx: Context, n: int):  # type: ignore[no-untyped-def]
        promises = []
        for i in range(n):
            # Each child is inc itself, a durable call of its own (as in DBOS, whose child
            # workflows compute i + 1 in their body).
            p = yield ctx.begin_run(step_inc, i)
            promises.append(p)
        total = 0
        for p in promises:
            total += yield p
        return total

    t0 = time.perf_counter()
    got = fan.run("w4", n)
    ms = common.ms_since(t0)
    want = sum(i + 1 for i in range(n))
    assert got == want, (got, want)
    return {"ms_total": ms, "sum": got}


def w5(rounds: int, store: Path) -> dict[str, Any]:
    r = new_resonate()

    @r.register
    def waiter(ctx: Context, pid: str):  # type: ignore[no-untyped-def]
        p = yield ctx.promise(id=pid)
        value = yield p
        return value

    def wait_created(pid: str) -> None:
        # Blocked = the workflow has created its promise (then it yields on it).
        while True:
            try:
                if r.promises.get(pid).state == "PENDING":
                    return
            except Exception:  # ResonateStoreError 40400: not created yet
                pass
            time.sleep(0.0005)

    latencies: list[float] = []
    t_all = time.perf_counter()
    for i in range(rounds):
        pid = f"w5.{i}.signal"
        handle = waiter.begin_run(f"w5.{i}", pid)
        # Subscribe now: subscribing after the resolve races its store thread, which then
        # hands the resumed task out twice and the SDK exits the process (os._exit).
        handle.done()
        ms, got = common.w5_round(
            lambda pid=pid: wait_created(pid),
            # another party resolves: JSON data, no headers, as the SDK's default encoder reads
            lambda pid=pid, i=i: r.promises.resolve(id=pid, data=f'"v{i}"'),
            lambda h=handle: h.result(timeout=30))
        latencies.append(round(ms, 4))
        assert got == f"v{i}", got
    return common.w5_fields(latencies, common.ms_since(t_all))


def w6_child(steps: int, store: Path, side: Path) -> Any:
    r = new_resonate()

    def work(ctx: Context, i: int) -> int:
        return common.w6_step(side, i)

    @r.register
    def slow(ctx: Context, steps: int):  # type: ignore[no-untyped-def]
        done = 0
        for i in range(steps):
            yield ctx.run(work, i)
            done += 1
        return done

    return slow.run("w6", steps)


PEER = common.Peer(
    system=SYSTEM,
    note="official resonate-sdk 0.6.7, Resonate.local(), Python 3.12",
    durability=lambda store: "none: Resonate.local() keeps promises in memory "
                             "(no file, no journal, no fsync)",
    workloads={"W1": w1, "W2": w2, "W3": w3, "W4": w4, "W5": w5},
    w6_child=w6_child,
    notes={
        "W5": ["the handle subscribes (handle.done()) before the resolve: subscribing just "
               "after it raced the SDK's store thread, which claimed the resumed task twice "
               "and exited the process (os._exit) in 1 of our first 8 runs"],
        "W4": ["children: ctx.begin_run(inc, i), each a durable call of its own"],
        "W6": ["nothing persisted: the restarted process runs every step again"],
    },
)

if __name__ == "__main__":
    sys.exit(common.main(PEER, __file__))
