"""Run every peer workload several times and print the medians (stdlib only).

    python bench/peers/run_all.py [--peers dbos,resonate06] [--runs 3] [--quick] [--only W4]

Makes the venvs (venvs.py), then runs each workload ``--runs`` times, one fresh
process per run, one peer after the other (never two at once: the machine is small
and noisy). Every JSON line goes to ``bench/results/peers-<UTC time>.jsonl``
(git-ignored); a Markdown table of medians goes to stdout. W1 runs at n=2000 and
n=500, which gives the growth exponent k in time ∝ n^k.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import venvs  # noqa: E402

# (label, workload, extra args) in the order they run.
CASES = [("W1", "W1", []), ("W1@500", "W1", ["--n", "500"]), ("W2", "W2", []),
         ("W3", "W3", []), ("W4", "W4", []), ("W5", "W5", []), ("W6", "W6", [])]
# label -> (field, what the table shows)
SHOWN = {"W1": ("us_per_step", "µs/step"), "W1@500": ("us_per_step", "µs/step"),
         "W2": ("ms_per_wf_median", "ms/wf median"), "W3": ("ms_total", "ms"),
         "W4": ("ms_total", "ms"), "W5": ("p50", "ms p50"), "W6": ("restart_s", "s")}
EXTRA = {"W2": ["ms_per_wf_mean", "ms_per_wf_p90"], "W5": ["p90"], "W6": ["rerun_steps"]}


def run_case(python: Path, script: Path, workload: str, args: list[str]) -> dict[str, Any]:
    cmd = [str(python), str(script), "--workload", workload, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        return {"workload": workload, "ok": False, "error": proc.stderr[-400:]}
    return json.loads(lines[-1])


def median_of(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if r.get("ok") and key in r]
    return round(statistics.median(values), 3) if values else None


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--peers", default="dbos,resonate06")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only", default="", help="comma-separated labels, e.g. W1@500,W4")
    args = p.parse_args(argv)
    out_dir = HERE.parent / "results"
    out_dir.mkdir(exist_ok=True)
    out = out_dir / f"peers-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.jsonl"
    table: dict[str, dict[str, list[dict[str, Any]]]] = {}
    with out.open("w") as sink:
        for peer in args.peers.split(","):
            python = venvs.ensure_venv(peer)
            if not isinstance(python, Path):
                row = {"system": peer, "ok": False, "error": python}
                print(json.dumps(row), file=sys.stderr)
                sink.write(json.dumps(row) + "\n")
                continue
            script = HERE / f"{peer}_w.py"
            for label, workload, extra in CASES:
                if (args.quick and label == "W1@500") or (args.only and label not in
                                                           args.only.split(",")):
                    continue
                for _ in range(args.runs):
                    row = run_case(python, script, workload,
                                   [*extra, *(["--quick"] if args.quick else [])])
                    row["label"] = label
                    sink.write(json.dumps(row) + "\n")
                    sink.flush()
                    table.setdefault(peer, {}).setdefault(label, []).append(row)
                    status = "ok" if row.get("ok") else f"FAILED {row.get('error', '')[:200]}"
                    print(f"{peer} {label}: {status}", file=sys.stderr, flush=True)
    print(f"| workload | {' | '.join(table)} |")
    print(f"|---|{'---|' * len(table)}")
    for label, _, _ in CASES:
        if not any(label in by_label for by_label in table.values()):
            continue
        key, unit = SHOWN[label]
        cells = []
        for by_label in table.values():
            rows = by_label.get(label, [])
            med = median_of(rows, key)
            extra = ", ".join(f"{k} {median_of(rows, k)}" for k in EXTRA.get(label, []))
            failed = sum(1 for r in rows if not r.get("ok"))
            cells.append("n/a" if med is None else f"{med} {unit}" + (f" ({extra})" if extra
                         else "") + (f" [{failed} of {len(rows)} failed]" if failed else ""))
        print(f"| {label} | {' | '.join(cells)} |")
    for peer, by_label in table.items():
        t2000 = median_of(by_label.get("W1", []), "ms_total")
        t500 = median_of(by_label.get("W1@500", []), "ms_total")
        if t2000 and t500:
            print(f"| W1 growth k ({peer}) | {math.log(t2000 / t500) / math.log(4):.2f} |")
        rss = [r["peak_rss_mb"] for rows in by_label.values() for r in rows if r.get("ok")]
        if rss:
            print(f"| peak RSS MB ({peer}) | {min(rss)}-{max(rss)} |")
    print(f"raw lines: {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
