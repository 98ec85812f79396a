"""Benchmark peer: DBOS Transact 3.4 (Python) on a SQLite system database.

    bench/.venvs/dbos/bin/python bench/peers/dbos_w.py --workload W1 [--n 2000] [--quick]

(make the venv first: ``python bench/peers/venvs.py dbos``). Runs ONE of the
workloads W1-W6 of shared/BENCHMARKS.md and prints one JSON line (see common.py).

This machine's SQLite (3.40.1) is too old for DBOS 3.4, so the ``pysqlite3-binary``
build is installed as ``sqlite3`` before anything imports it. The system database is
a fresh file in a per-process temp dir, with DBOS's own settings (it sets no
journal_mode or synchronous pragma: SQLite's defaults, rollback journal and FULL).
Workflows are plain functions: a workflow that calls another workflow makes a
durable child workflow; ``DBOS.start_workflow`` starts one without awaiting it.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

SYSTEM = "dbos-3.4"

try:
    import pysqlite3  # the newer SQLite DBOS 3.4 needs; must come before dbos/sqlalchemy

    sys.modules["sqlite3"] = pysqlite3
    sys.modules["sqlite3.dbapi2"] = pysqlite3.dbapi2

    from dbos import DBOS, SetWorkflowID
except ImportError as exc:
    common.import_failed(SYSTEM, "dbos", exc)

# DBOS wakes a blocked recv by polling its notifications table (no LISTEN/NOTIFY in
# SQLite); the default poll is 1 s, which would make W5 measure the poll, not DBOS.
NOTIFY_POLL_S = 0.01
RESULT_POLL_S = 0.01  # for handles of workflows run by another process (W6 restart)
W7_CONCURRENCY, W7_POLL_S = 16, 0.010  # BENCHMARKS.md W7: one queue, concurrency 16, 10 ms polling
W3_RECURSION_LIMIT = 20_000  # inline child workflows nest ~15 Python frames per level
_side: Path | None = None  # W6 side file, set before launch
_ready = threading.Event()  # W5: set by the workflow just before it blocks in recv


@DBOS.step()
def inc(i: int) -> int:
    return i + 1


@DBOS.workflow()
def chain(n: int) -> int:
    x = 0
    for _ in range(n):
        x = inc(x)
    return x


@DBOS.workflow()
def one(i: int) -> int:
    return inc(i)


@DBOS.workflow()
def fact(k: int) -> int:
    if k <= 1:
        return 1
    return k * fact(k - 1)  # calling a workflow from a workflow: a durable child


@DBOS.workflow()
def child(i: int) -> int:
    return i + 1  # the child workflow is inc itself (no step inside: one durable call each)


@DBOS.workflow()
def fan(n: int) -> int:
    handles = [DBOS.start_workflow(child, i) for i in range(n)]
    return sum(h.get_result() for h in handles)


@DBOS.workflow()
def waiter() -> Any:
    _ready.set()  # not durable state: only tells the benchmark the recv is next
    return DBOS.recv("signal", timeout_seconds=60)


@DBOS.step()
def w6_work(i: int) -> int:
    assert _side is not None
    return common.w6_step(_side, i)


@DBOS.workflow()
def slow(steps: int) -> int:
    done = 0
    for i in range(steps):
        w6_work(i)
        done += 1
    return done


@DBOS.workflow()
def three(i: int) -> int:
    x = i
    for _ in range(common.W7_STEPS):
        x = inc(x)
    return x


@DBOS.workflow()
def nap(secs: float) -> tuple[float, float]:
    before = time.time() * 1000
    DBOS.sleep(secs)
    return before, time.time() * 1000


def launch(store: Path) -> None:
    DBOS(config={
        "name": "bench",
        "system_database_url": f"sqlite:///{store}/dbos.sqlite",
        "notification_listener_polling_interval_sec": NOTIFY_POLL_S,
        "log_level": "WARNING",
    })
    DBOS.launch()


def durability(store: Path) -> str:
    path = store / "dbos.sqlite"
    if not path.exists():
        return "SQLite file (not created)"
    conn = pysqlite3.connect(str(path))
    try:
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        sync = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}[
            conn.execute("PRAGMA synchronous").fetchone()[0]]
    finally:
        conn.close()
    return (f"SQLite {pysqlite3.sqlite_version} file, journal_mode={mode}, synchronous={sync} "
            "(DBOS sets neither: SQLite defaults)")


def w1(n: int, store: Path) -> dict[str, Any]:
    launch(store)
    t0 = time.perf_counter()
    got = chain(n)
    ms = common.ms_since(t0)
    assert got == n, got
    return common.w1_fields(n, ms)


def w2(n: int, store: Path) -> dict[str, Any]:
    launch(store)
    per_wf: list[float] = []
    t0 = time.perf_counter()
    for i in range(n):
        t = time.perf_counter()
        with SetWorkflowID(f"w2.{i}"):
            handle = DBOS.start_workflow(one, i)
        got = handle.get_result()
        per_wf.append(common.ms_since(t))
        assert got == i + 1, got
    return common.w2_fields(per_wf, common.ms_since(t0))


def w3(n: int, store: Path) -> dict[str, Any]:
    launch(store)
    sys.setrecursionlimit(max(sys.getrecursionlimit(), W3_RECURSION_LIMIT))
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            t0 = time.perf_counter()
            with SetWorkflowID("w3"):
                got = fact(n)
            result["ms_total"] = common.ms_since(t0)
            result.update(common.check_factorial(n, got))
        except BaseException as exc:  # re-raised in the main thread
            result["error"] = exc

    # The recursion is inline (the child runs in the parent's thread): give it a deep stack.
    threading.stack_size(256 * 1024 * 1024)
    t = threading.Thread(target=run)
    t.start()
    t.join()
    if "error" in result:
        raise result["error"]
    return result


def w4(n: int, store: Path) -> dict[str, Any]:
    launch(store)
    t0 = time.perf_counter()
    got = fan(n)
    ms = common.ms_since(t0)
    want = sum(i + 1 for i in range(n))
    assert got == want, (got, want)
    return {"ms_total": ms, "sum": got}


def w5(rounds: int, store: Path) -> dict[str, Any]:
    launch(store)
    latencies: list[float] = []
    t_all = time.perf_counter()
    for i in range(rounds):
        _ready.clear()
        wfid = f"w5.{i}"
        with SetWorkflowID(wfid):
            handle = DBOS.start_workflow(waiter)
        ms, got = common.w5_round(
            lambda: _ready.wait(30),
            lambda wfid=wfid, i=i: DBOS.send(wfid, f"v{i}", "signal"),  # outside a workflow
            handle.get_result)
        latencies.append(round(ms, 4))
        assert got == f"v{i}", got
    return common.w5_fields(latencies, common.ms_since(t_all))


def w7(n: int, store: Path) -> dict[str, Any]:
    """n workflows of three steps enqueued on one queue (worker concurrency 16, 10 ms polling)."""
    launch(store)
    queue = DBOS.register_queue("w7", worker_concurrency=W7_CONCURRENCY, polling_interval_sec=W7_POLL_S)
    t0 = time.perf_counter()
    handles = []
    for i in range(n):
        with SetWorkflowID(f"w7.{i}"):
            handles.append(queue.enqueue(three, i))
    submit = common.ms_since(t0)
    for i, h in enumerate(handles):
        assert h.get_result() == i + common.W7_STEPS
    return common.w7_fields(n, common.ms_since(t0), submit)


def w8(n: int, store: Path) -> dict[str, Any]:
    """n workflows that each DBOS.sleep(1), started at once; lateness past (time before the sleep + 1 s)."""
    launch(store)
    t0 = time.perf_counter()
    handles = []
    for i in range(n):
        with SetWorkflowID(f"w8.{i}"):
            handles.append(DBOS.start_workflow(nap, common.W8_SLEEP_S))
    late = []
    for h in handles:
        before, woke = h.get_result()
        late.append(woke - before - common.W8_SLEEP_S * 1000)
    return common.w8_fields(late, common.ms_since(t0))


def w6_child(steps: int, store: Path, side: Path) -> Any:
    global _side
    _side = side
    launch(store)  # after a SIGKILL, launch() recovers the PENDING workflow "w6"
    if DBOS.get_workflow_status("w6") is not None:
        return DBOS.retrieve_workflow("w6").get_result(polling_interval_sec=RESULT_POLL_S)
    with SetWorkflowID("w6"):
        return DBOS.start_workflow(slow, steps).get_result()


PEER = common.Peer(
    system=SYSTEM,
    note=(f"dbos 3.4.0 on SQLite via pysqlite3-binary swapped in as sqlite3 "
          f"(system SQLite 3.40.1 too old); notification poll {NOTIFY_POLL_S * 1000:g} ms "
          "(default 1 s)"),
    durability=durability,
    workloads={"W1": w1, "W2": w2, "W3": w3, "W4": w4, "W5": w5, "W7": w7, "W8": w8},
    w6_child=w6_child,
    notes={
        "W3": [f"children run inline in the parent's thread, ~16 Python frames a level: with "
               f"the default recursion limit it fails past depth ~60, so the limit is raised "
               f"to {W3_RECURSION_LIMIT} and the run gets a 256 MiB thread stack"],
        "W4": ["children: DBOS.start_workflow of a workflow returning i + 1, run on DBOS's "
               "thread pool; then get_result of each"],
        "W7": [f"one DBOS queue, worker_concurrency={W7_CONCURRENCY}, polling {W7_POLL_S * 1000:g} ms; "
               "enqueued one after another by the measuring process"],
        "W8": ["lateness = wake time - (time just before DBOS.sleep + 1 s)"],
        "W6": [f"restart = launch() recovers the PENDING workflow; the result is read with a "
               f"{RESULT_POLL_S * 1000:g} ms poll"],
    },
)

if __name__ == "__main__":
    sys.exit(common.main(PEER, __file__))
