"""Benchmark: resonate (this repo) on the six workloads, in local mode or through the daemon.

    python bench/ours_w.py --workload W1 [--mode local|daemon] [--durability full|normal] \
        [--n 2000] [--quick]

Runs ONE workload of shared/BENCHMARKS.md and prints one JSON line with the fields of the
peers' scripts (bench/peers/common.py, whose harness this reuses: a child process per run, a
fresh temp dir as store, perf_counter around the workload only).

- ``--mode local``: ``Resonate.local(path=<tmp>/bench.db, durability=...)``: SQLite file, WAL,
  synchronous FULL or NORMAL. W6 SIGKILLs the process at step n/2 and starts it again.
- ``--mode daemon``: starts ``python -m resonate_daemon`` (Unix socket, SQLite file in the run's
  temp dir, or a fresh PostgreSQL database when ``BENCH_PG`` names a server: see ``_db``) and worker processes (this script with ``--worker``, group ``bench``); the measuring
  process is a ``Resonate.remote`` client that ``rpc``s the workflows to the workers. W6 runs
  with two workers: the one running the workflow is SIGKILLed at step n/2 and the daemon hands
  the task to the other; ``restart_s`` is from the kill to the client holding the result.

``--mode`` and ``--durability`` travel to the child processes in ``BENCH_MODE`` and
``BENCH_DURABILITY``, so common.py's argument parser stays the peers' one.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE / "peers"))
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
import common  # noqa: E402

from resonate import Context, Resonate  # noqa: E402

MODE = os.environ.get("BENCH_MODE", "local")
DURABILITY = os.environ.get("BENCH_DURABILITY", "full")
GROUP = "bench"


# -- the workflows (the same code runs in local mode and in the daemon's workers) -------------------
def inc(ctx: Context, i: int) -> int:
    return i + 1


def register(r: Resonate) -> dict[str, Any]:
    @r.register
    def chain(ctx: Context, n: int):  # type: ignore[no-untyped-def]
        x = 0
        for _ in range(n):
            x = yield ctx.run(inc, x)
        return x

    @r.register
    def one(ctx: Context, i: int):  # type: ignore[no-untyped-def]
        return (yield ctx.run(inc, i))

    @r.register
    def fact(ctx: Context, k: int):  # type: ignore[no-untyped-def]
        if k <= 1:
            return 1
        # ctx.run of a registered generator function: a durable child execution (its own promise)
        return k * (yield ctx.run(fact, k - 1))

    @r.register
    def fan(ctx: Context, n: int):  # type: ignore[no-untyped-def]
        promises = []
        for i in range(n):
            promises.append((yield ctx.begin_run(inc, i)))
        total = 0
        for p in promises:
            total += yield p
        return total

    @r.register
    def waiter(ctx: Context, pid: str):  # type: ignore[no-untyped-def]
        p = yield ctx.promise(id=pid)
        return (yield p)

    def work(ctx: Context, i: int, side: str) -> int:
        time.sleep(common.W6_STEP_S)
        with open(side, "a") as f:
            f.write(f"{i} {os.getpid()}\n")
        return i

    @r.register
    def slow(ctx: Context, steps: int, side: str):  # type: ignore[no-untyped-def]
        done = 0
        for i in range(steps):
            yield ctx.run(work, i, side)
            done += 1
        return done

    @r.register
    def three(ctx: Context, i: int):  # type: ignore[no-untyped-def]
        x = i
        for _ in range(common.W7_STEPS):
            x = yield ctx.run(inc, x)
        return x

    @r.register
    def nap(ctx: Context, secs: float):  # type: ignore[no-untyped-def]
        yield ctx.sleep(secs)
        return time.time() * 1000  # when the code after the sleep ran (wall ms)

    return {"chain": chain, "one": one, "fact": fact, "fan": fan, "waiter": waiter, "slow": slow,
            "three": three, "nap": nap}


# -- the two ways of running them -----------------------------------------------------------------
class Local:
    def __init__(self, store: Path) -> None:
        self.r = Resonate.local(path=str(store / "bench.db"), durability=DURABILITY)
        self.fns = register(self.r)

    def call(self, id: str, name: str, *args: Any) -> Any:
        return self.fns[name].run(id, *args)

    def begin(self, id: str, name: str, *args: Any) -> Any:
        return self.fns[name].begin_run(id, *args)

    def close(self) -> dict[str, Any]:
        self.r.stop()
        return {}


def _vm_hwm_mb(pid: int) -> float | None:
    """Peak RSS of another live process (VmHWM), MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


class Daemon:
    """A daemon and ``workers`` worker processes on a fresh store; this process is the client."""

    def __init__(self, store: Path, workers: int = 1) -> None:
        self.store = store
        self.sock = str(store / "d.sock")
        self.daemon = subprocess.Popen(
            [sys.executable, "-m", "resonate_daemon", "--socket", self.sock, "--db", _db(store),
             "--durability", DURABILITY], stderr=open(store / "daemon.log", "w"))
        self.workers: list[subprocess.Popen[str]] = []
        try:
            self._wait_socket()
            for _ in range(workers):
                self.add_worker()
            self.r = Resonate.remote(group="bench-client", socket=self.sock)
            self.target = self.r.options(target=GROUP)
            self.target.rpc("warm-up", "one", 0)  # connections open, worker imported, caches warm
        except BaseException:
            self.close()
            raise

    def _wait_socket(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.daemon.poll() is not None:
                raise RuntimeError(f"daemon exited {self.daemon.returncode}: "
                                   f"{(self.store / 'daemon.log').read_text()[-600:]}")
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(self.sock)
                return
            except OSError:
                time.sleep(0.01)
        raise TimeoutError("the daemon never listened")

    def add_worker(self) -> subprocess.Popen[str]:
        w = subprocess.Popen([sys.executable, __file__, "--worker", self.sock], stdout=subprocess.PIPE,
                             text=True)
        assert w.stdout is not None
        if w.stdout.readline().strip() != "ready":
            raise RuntimeError(f"worker exited {w.wait()} before it was ready")
        self.workers.append(w)
        return w

    def call(self, id: str, name: str, *args: Any) -> Any:
        return self.target.rpc(id, name, *args)

    def begin(self, id: str, name: str, *args: Any) -> Any:
        return self.target.begin_rpc(id, name, *args)

    def close(self) -> dict[str, Any]:
        rss = {"daemon_peak_rss_mb": _vm_hwm_mb(self.daemon.pid),
               "worker_peak_rss_mb": max((_vm_hwm_mb(w.pid) or 0.0 for w in self.workers), default=None)}
        if hasattr(self, "r"):
            self.r.stop()
        for p in [*self.workers, self.daemon]:
            if p.poll() is None:
                p.terminate()
        for p in [*self.workers, self.daemon]:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        return rss


def _db(store: Path) -> str:
    """The daemon's database: a file in the run's temp dir, or with ``BENCH_PG`` (the URL of a PostgreSQL
    database whose user may create databases) a fresh PostgreSQL database named after that dir."""
    admin = os.environ.get("BENCH_PG")
    if not admin:
        return str(store / "d.db")
    from urllib.parse import urlsplit, urlunsplit

    import psycopg

    name = "bench_" + "".join(ch if ch.isalnum() else "_" for ch in store.name.lower())
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"'.encode())
    parts = urlsplit(admin)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))


def system(store: Path, workers: int = 1) -> Local | Daemon:
    return Daemon(store, workers) if MODE == "daemon" else Local(store)


def _run(store: Path, body: Any) -> dict[str, Any]:
    sys_ = system(store)
    try:
        fields = body(sys_)
    finally:
        extra = sys_.close()
    return {**fields, **{k: v for k, v in extra.items() if v is not None}}


# -- the workloads --------------------------------------------------------------------------------
def w1(n: int, store: Path) -> dict[str, Any]:
    def body(s: Local | Daemon) -> dict[str, Any]:
        t0 = time.perf_counter()
        got = s.call("w1", "chain", n)
        ms = common.ms_since(t0)
        assert got == n, got
        return common.w1_fields(n, ms)
    return _run(store, body)


def w2(n: int, store: Path) -> dict[str, Any]:
    def body(s: Local | Daemon) -> dict[str, Any]:
        per_wf: list[float] = []
        t0 = time.perf_counter()
        for i in range(n):
            t = time.perf_counter()
            got = s.call(f"w2.{i}", "one", i)
            per_wf.append(common.ms_since(t))
            assert got == i + 1, got
        return common.w2_fields(per_wf, common.ms_since(t0))
    return _run(store, body)


def w3(n: int, store: Path) -> dict[str, Any]:
    def body(s: Local | Daemon) -> dict[str, Any]:
        t0 = time.perf_counter()
        got = s.call("w3", "fact", n)
        ms = common.ms_since(t0)
        return {"ms_total": ms, **common.check_factorial(n, got)}
    return _run(store, body)


def w4(n: int, store: Path) -> dict[str, Any]:
    def body(s: Local | Daemon) -> dict[str, Any]:
        t0 = time.perf_counter()
        got = s.call("w4", "fan", n)
        ms = common.ms_since(t0)
        want = sum(i + 1 for i in range(n))
        assert got == want, (got, want)
        return {"ms_total": ms, "sum": got}
    return _run(store, body)


def w7(n: int, store: Path) -> dict[str, Any]:
    """n workflows of three steps, started one after another by this client (as a user's loop of
    begin_rpc would), run by two workers; from the first start to the last result."""
    # 2 workers of 8 threads each: 16 executions at once, as DBOS's queue (worker concurrency 16)
    os.environ.setdefault("BENCH_WORKER_THREADS", "8")
    s = Daemon(store, workers=2) if MODE == "daemon" else Local(store)
    try:
        t0 = time.perf_counter()
        handles = [s.begin(f"w7.{i}", "three", i) for i in range(n)]
        submit = common.ms_since(t0)
        for i, h in enumerate(handles):
            assert h.result(timeout=600) == i + common.W7_STEPS
        fields = common.w7_fields(n, common.ms_since(t0), submit)
    finally:
        extra = s.close()
    return {**fields, **{k: v for k, v in extra.items() if v is not None}}


def w8(n: int, store: Path) -> dict[str, Any]:
    """n workflows that each sleep 1 s, started at once; lateness of each wake-up past the deadline the
    sleep's promise holds."""
    def body(s: Local | Daemon) -> dict[str, Any]:
        t0 = time.perf_counter()
        handles = [s.begin(f"w8.{i}", "nap", common.W8_SLEEP_S) for i in range(n)]
        woke = [h.result(timeout=600) for h in handles]
        ms = common.ms_since(t0)
        late = [w - s.r.promises.get(f"w8.{i}.1").timeout for i, w in enumerate(woke)]
        return common.w8_fields(late, ms)
    return _run(store, body)


def w5(rounds: int, store: Path) -> dict[str, Any]:
    def body(s: Local | Daemon) -> dict[str, Any]:
        promises = s.r.promises

        def wait_created(pid: str) -> None:
            while True:  # blocked = the workflow has created its promise (then it waits on it)
                try:
                    if promises.get(pid).state == "PENDING":
                        return
                except Exception:  # not created yet
                    pass
                time.sleep(0.0005)

        latencies: list[float] = []
        t_all = time.perf_counter()
        for i in range(rounds):
            pid = f"w5.{i}.signal"
            handle = s.begin(f"w5.{i}", "waiter", pid)
            ms, got = common.w5_round(
                lambda pid=pid: wait_created(pid),
                lambda pid=pid, i=i: promises.resolve(id=pid, data=f'"v{i}"'),
                lambda h=handle: h.result(timeout=30))
            latencies.append(round(ms, 4))
            assert got == f"v{i}", got
        return common.w5_fields(latencies, common.ms_since(t_all))
    return _run(store, body)


def w6_child(steps: int, store: Path, side: Path) -> Any:
    """Local mode: one process runs the workflow (killed at n/2 by common.run_w6_parent)."""
    s = Local(store)
    try:
        return s.call("w6", "slow", steps, str(side))
    finally:
        s.close()


def _side(side: Path) -> list[tuple[str, int]]:
    try:
        return [(a, int(b)) for a, b in (ln.split() for ln in side.read_text().splitlines() if ln.strip())]
    except FileNotFoundError:
        return []


def w6_daemon(steps: int, store: Path) -> dict[str, Any]:
    """Through the daemon: two workers; SIGKILL the one running the workflow at step n/2."""
    side = store / "side.txt"
    kill_at = steps // 2
    s = Daemon(store, workers=2)
    try:
        handle = s.begin("w6", "slow", steps, str(side))
        deadline = time.monotonic() + 120
        while len(lines := _side(side)) < kill_at:
            if time.monotonic() > deadline:
                raise TimeoutError("the workflow never reached the kill point")
            time.sleep(0.001)
        victim = lines[-1][1]
        os.kill(victim, signal.SIGKILL)
        t0 = time.perf_counter()
        lines_at_kill = len(_side(side))
        got = handle.result(timeout=120)
        restart_s = time.perf_counter() - t0
        lines = _side(side)
        counts = Counter(i for i, _ in lines)
        missing = [i for i in range(steps) if str(i) not in counts]
        if missing or got != steps:
            raise AssertionError(f"W6 result {got}, steps never run: {missing[:10]}")
        resumed_by = {pid for i, pid in lines if int(i) >= lines_at_kill}
        if victim in resumed_by:
            raise AssertionError("the killed worker still wrote steps")
        return {"ms_total": round(restart_s * 1000, 3), "restart_s": round(restart_s, 3),
                "rerun_steps": sum(1 for c in counts.values() if c > 1),
                "steps_before_kill": lines_at_kill, "kill_at": kill_at}
    finally:
        s.close()


def worker(sock: str) -> int:
    """``--worker SOCK``: a worker of group ``bench`` until SIGTERM."""
    # BENCH_WORKER_THREADS: executions at once per worker process (W7: 8 each, 16 in all, as DBOS's queue)
    r = Resonate.remote(group=GROUP, socket=sock, workers=int(os.environ.get("BENCH_WORKER_THREADS", "4")))
    register(r)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    r.start()
    print("ready", flush=True)
    done.wait()
    r.stop()
    return 0


def _durability(store: Path) -> str:
    return f"SQLite file, WAL, synchronous={DURABILITY.upper()}"


def peer() -> common.Peer:
    if MODE == "daemon":
        return common.Peer(
            system=f"resonate-daemon-{DURABILITY}",
            note="this repo through its daemon: Unix socket, 1 worker process (W6: 2; W7: 2 of 8 threads), "
                 "client in the measuring process",
            durability=_durability, workloads={"W1": w1, "W2": w2, "W3": w3, "W4": w4, "W5": w5, "W7": w7, "W8": w8},
            w6_child=w6_child, w6_parent=w6_daemon,
            notes={"W6": ["restart_s: from SIGKILL of the worker to the client holding the result; "
                          "the other live worker resumes"]})
    return common.Peer(
        system=f"resonate-local-{DURABILITY}",
        note="this repo, Resonate.local(path=file), in process",
        durability=_durability, workloads={"W1": w1, "W2": w2, "W3": w3, "W4": w4, "W5": w5, "W7": w7, "W8": w8},
        w6_child=w6_child, notes={"W4": ["children: ctx.begin_run(inc, i), each a durable call"]})


def main(argv: list[str]) -> int:
    if argv[:1] == ["--worker"]:
        return worker(argv[1])
    rest: list[str] = []
    it = iter(argv)
    for a in it:  # ours-only flags go to the environment, so every child process sees them
        if a in ("--mode", "--durability"):
            value = next(it)
            os.environ["BENCH_MODE" if a == "--mode" else "BENCH_DURABILITY"] = value
        else:
            rest.append(a)
    global MODE, DURABILITY
    MODE, DURABILITY = os.environ.get("BENCH_MODE", "local"), os.environ.get("BENCH_DURABILITY", "full")
    if MODE not in ("local", "daemon") or DURABILITY not in ("full", "normal"):
        print(json.dumps({"ok": False, "error": f"bad --mode {MODE} or --durability {DURABILITY}"}))
        return 2
    return common.main(peer(), __file__, rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
