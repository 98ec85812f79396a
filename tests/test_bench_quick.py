"""bench/run --quick --only-ours still works: every run prints one JSON line with ok: true.

Not a timing test (benchmarks never assert times in CI, BENCHMARKS.md): it keeps the scripts of
bench/ from rotting. The peers are left out: their venvs take minutes to build.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_run_quick_only_ours() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "run"), "--quick", "--only-ours", "--runs", "1",
                           "--no-chart"], capture_output=True, text=True, timeout=240, cwd=ROOT)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    rows = [json.loads(ln) for ln in lines]
    bad = [r for r in rows if r.get("ok") is not True]
    assert not bad, bad
    assert proc.returncode == 0, proc.stderr[-2000:]
    seen = {(r["bench_system"], r["workload"]) for r in rows}
    assert seen == {(s, w) for s in ("local-full", "local-normal", "daemon")
                    for w in ("W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8")}
    assert "| W1 (µs/step) |" in proc.stderr
