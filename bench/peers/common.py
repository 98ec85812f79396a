"""The harness shared by the peer benchmark scripts (stdlib only, Python 3.11+).

``dbos_w.py`` and ``resonate06_w.py`` each give ``main()`` a ``Peer``: the system's
name, its durability setting and one function per workload. ``main()`` parses the
command line and runs ONE workload in a child process of the same script
(``--inner``), so that exactly one JSON line reaches stdout even when the peer kills
its own process; diagnostics go to stderr. Each run gets a fresh temp dir as store.
W6 runs the script once more as ``--w6-child``, SIGKILLs it once half the steps
have run, starts it again and times the restart.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Full and --quick sizes of each workload (W6: steps; the kill comes at half of them).
FULL_N = {"W1": 2000, "W2": 500, "W3": 200, "W4": 500, "W5": 50, "W6": 100, "W7": 1000, "W8": 1000}
QUICK_N = {"W1": 50, "W2": 20, "W3": 30, "W4": 50, "W5": 5, "W6": 20, "W7": 50, "W8": 50}
W7_STEPS = 3  # each W7 workflow: three sequential steps
W8_SLEEP_S = 1.0
W6_STEP_S = 0.010


@dataclass(frozen=True)
class Peer:
    system: str
    note: str
    # the store dir after the run -> its durability setting (journal mode, synchronous)
    durability: Callable[[Path], str]
    # workload id -> fn(n, store_dir) -> fields of the JSON line (ms_total and the rest)
    workloads: dict[str, Callable[[int, Path], dict[str, Any]]]
    # W6 child: fn(steps, store_dir, side_file) -> result; runs in its own process
    w6_child: Callable[[int, Path, Path], Any]
    # workload id -> extra notes for its JSON line
    notes: dict[str, list[str]] = field(default_factory=dict)
    # W6 done another way than kill-and-restart of one process: fn(steps, store_dir) -> fields
    # (ours through the daemon: SIGKILL a worker, another worker resumes)
    w6_parent: Callable[[int, Path], dict[str, Any]] | None = None


def inc(i: int) -> int:
    return i + 1


def ms_since(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 3)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def latency_fields(ms: list[float], prefix: str = "ms_per_wf") -> dict[str, float]:
    return {
        f"{prefix}_mean": round(statistics.fmean(ms), 4),
        f"{prefix}_median": round(statistics.median(ms), 4),
        f"{prefix}_p90": round(percentile(ms, 90), 4),
    }


def w1_fields(n: int, ms_total: float) -> dict[str, Any]:
    return {"ms_total": ms_total, "us_per_step": round(ms_total * 1000 / n, 2),
            "steps_per_s": round(n / (ms_total / 1000), 1)}


def w2_fields(per_wf_ms: list[float], ms_total: float) -> dict[str, Any]:
    return {"ms_total": ms_total, **latency_fields(per_wf_ms),
            "wf_per_s": round(len(per_wf_ms) / (ms_total / 1000), 1)}


def w7_fields(n: int, ms_total: float, submit_ms: float) -> dict[str, Any]:
    """Throughput from the first start to the last result."""
    return {"ms_total": round(ms_total, 3), "submit_ms": round(submit_ms, 3), "ms_per_wf": round(ms_total / n, 4),
            "wf_per_s": round(n / (ms_total / 1000), 1), "steps_per_s": round(n * W7_STEPS / (ms_total / 1000), 1)}


def w8_fields(lateness_ms: list[float], ms_total: float) -> dict[str, Any]:
    """Lateness of each wake-up past its deadline."""
    return {"ms_total": round(ms_total, 3), "late_p50": round(percentile(lateness_ms, 50), 3),
            "late_p99": round(percentile(lateness_ms, 99), 3), "late_max": round(max(lateness_ms), 3)}


def w5_fields(latencies_ms: list[float], ms_total: float) -> dict[str, Any]:
    return {"ms_total": ms_total, "p50": round(statistics.median(latencies_ms), 4),
            "p90": round(percentile(latencies_ms, 90), 4), "rounds": len(latencies_ms)}


def w5_round(wait_blocked: Callable[[], None], resolve: Callable[[], None],
             await_result: Callable[[], Any]) -> tuple[float, Any]:
    """One W5 round: another thread resolves once the workflow is blocked; this thread
    awaits the result. Returns (ms from the resolve call to the result, the result)."""
    t_resolve: list[float] = []

    def resolver() -> None:
        wait_blocked()
        time.sleep(0.005)  # the workflow has just asked to wait: let it really block
        t_resolve.append(time.perf_counter())
        resolve()

    thread = threading.Thread(target=resolver, name="w5-resolver")
    thread.start()
    value = await_result()
    t_result = time.perf_counter()
    thread.join()
    return (t_result - t_resolve[0]) * 1000, value


def check_factorial(n: int, got: Any) -> dict[str, Any]:
    want = math.factorial(n)
    if got != want:
        raise AssertionError(f"factorial({n}) wrong: got {str(got)[:40]}...")
    return {"digits": len(str(got))}


def w6_step(side: Path, i: int) -> int:
    """One W6 step: 10 ms of 'work', then a line in the side file (flushed to the OS)."""
    time.sleep(W6_STEP_S)
    with open(side, "a") as f:
        f.write(f"{i}\n")
    return i


def peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux.
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _side_lines(side: Path) -> list[str]:
    """The step numbers in the side file, one per line (a line may go on with more, e.g. a pid)."""
    try:
        return [ln.split()[0] for ln in side.read_text().splitlines() if ln.strip()]
    except FileNotFoundError:
        return []


def run_w6_parent(script: str, steps: int, store: Path) -> dict[str, Any]:
    """Start the W6 child, SIGKILL it once half the steps ran, start it again, time it."""
    side = store / "side.txt"
    kill_at = steps // 2
    cmd = [sys.executable, script, "--w6-child", "--n", str(steps), "--store", str(store)]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while len(_side_lines(side)) < kill_at:
        if first.poll() is not None:
            raise RuntimeError(f"first run exited early ({first.returncode}): "
                               f"{first.stderr.read()[-800:]}")
        if time.monotonic() > deadline:
            first.kill()
            raise TimeoutError("first run never reached the kill point")
        time.sleep(0.001)
    first.send_signal(signal.SIGKILL)
    first.wait()
    lines_at_kill = len(_side_lines(side))
    t0 = time.perf_counter()
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    restart_s = time.perf_counter() - t0
    if second.returncode != 0:
        raise RuntimeError(f"restart failed ({second.returncode}): {second.stderr[-800:]}")
    child = json.loads(second.stdout.strip().splitlines()[-1])
    if not child.get("ok"):
        raise RuntimeError(f"restart: {child.get('error')}")
    counts = Counter(_side_lines(side))
    missing = [i for i in range(steps) if str(i) not in counts]
    if missing or child["result"] != steps:
        raise AssertionError(f"W6 result {child['result']}, steps never run: {missing[:10]}")
    return {"ms_total": round(restart_s * 1000, 3), "restart_s": round(restart_s, 3),
            "rerun_steps": sum(1 for c in counts.values() if c > 1),
            "steps_before_kill": lines_at_kill, "kill_at": kill_at,
            "child_peak_rss_mb": child.get("peak_rss_mb")}


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Run ONE benchmark workload; print one JSON line.")
    p.add_argument("--workload", choices=sorted(FULL_N), default=None)
    p.add_argument("--n", type=int, default=None, help="size (W3: factorial n; W5: rounds; "
                   "W6: steps)")
    p.add_argument("--quick", action="store_true", help="small sizes, to check it runs")
    p.add_argument("--timeout", type=float, default=900, help="seconds before giving up")
    p.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--w6-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--store", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not args.w6_child and args.workload is None:
        p.error("--workload is required")
    return args


def _supervise(script: str, argv: list[str], base: dict[str, Any], timeout: float) -> int:
    """Run the workload in a child process, so that a peer that kills its own process
    (Resonate 0.6.7 calls os._exit(1) on an internal error) still yields a JSON line."""
    cmd = [sys.executable, script, *argv, "--inner"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        out, err, rc = proc.stdout, proc.stderr, proc.returncode
    except subprocess.TimeoutExpired:
        out, err, rc = "", f"timed out after {timeout:g} s (--timeout)", -1
    sys.stderr.write(err)
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if lines:
        print(lines[-1], flush=True)
        return rc
    tail = " | ".join(ln.strip() for ln in str(err).splitlines()
                      if ln.strip() and not ln.startswith("http"))[-600:]
    print(json.dumps({**base, "ok": False, "error": f"process exited {rc} without a result: "
                      f"{tail}"}), flush=True)
    return 1


def _run_inner(peer: Peer, script: str, workload: str, n: int) -> int:
    line: dict[str, Any] = {"system": peer.system, "workload": workload, "n": n}
    store = Path(tempfile.mkdtemp(prefix=f"bench-{workload}-", dir="/tmp"))
    peak = 0.0
    try:
        if workload == "W6" and peer.w6_parent is not None:
            fields = peer.w6_parent(n, store)
            peak = fields.pop("child_peak_rss_mb", None) or 0.0
        elif workload == "W6":
            fields = run_w6_parent(script, n, store)
            peak = fields.pop("child_peak_rss_mb") or 0.0
        else:
            fields = peer.workloads[workload](n, store)
        line.update({"ok": True, **fields})
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        line.update({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
    line["peak_rss_mb"] = max(peak, peak_rss_mb())  # W6: the restarted child's
    line["durability"] = peer.durability(store)
    line["note"] = "; ".join([peer.note, *peer.notes.get(workload, [])])
    print(json.dumps(line), flush=True)
    shutil.rmtree(store, ignore_errors=True)
    # The peers leave non-daemon threads behind: do not wait for them.
    os._exit(0 if line["ok"] else 1)


def _run_w6_child(peer: Peer, n: int, store: Path) -> int:
    try:
        result = peer.w6_child(n, store, store / "side.txt")
        print(json.dumps({"ok": True, "result": result, "peak_rss_mb": peak_rss_mb()}),
              flush=True)
        code = 0
    except Exception as exc:  # reported as JSON, not only a traceback
        traceback.print_exc(file=sys.stderr)
        print(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"}), flush=True)
        code = 1
    os._exit(code)


def import_failed(system: str, venv: str, exc: ImportError) -> None:
    """The peer's package cannot be imported: say so in the one JSON line, and exit 1."""
    argv = sys.argv[1:]
    workload = argv[argv.index("--workload") + 1] if "--workload" in argv[:-1] else None
    print(json.dumps({"system": system, "workload": workload, "ok": False,
                      "error": f"{type(exc).__name__}: {exc} (make the venv: python "
                               f"bench/peers/venvs.py {venv})"}), flush=True)
    sys.exit(1)


def main(peer: Peer, script: str, argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parse(argv)
    if args.w6_child:
        return _run_w6_child(peer, args.n, Path(args.store))
    n = args.n if args.n is not None else (QUICK_N if args.quick else FULL_N)[args.workload]
    if args.inner:
        return _run_inner(peer, script, args.workload, n)
    base = {"system": peer.system, "workload": args.workload, "n": n}
    return _supervise(script, [*argv, "--n", str(n)], base, args.timeout)
