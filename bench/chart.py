"""The bar chart of a bench/run summary: ``python bench/chart.py SUMMARY.json OUT.png``.

Runs in the bench/.venvs/plot venv (matplotlib is not a dependency of the project). One panel
per workload, one bar per system (its median, with a [min-max] whisker), log scale: the systems
differ by orders of magnitude.
"""

from __future__ import annotations

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"local-full": "#1f77b4", "local-normal": "#6baed6", "daemon": "#08519c",
          "dbos": "#d62728", "resonate06": "#ff7f0e"}


def main(src: str, out: str) -> None:
    summary = json.load(open(src))
    systems: dict[str, str] = summary["systems"]
    labels = [lb for lb in ("W1", "W2", "W3", "W4", "W5", "W6") if lb in summary["cells"]]
    fig, axes = plt.subplots(1, len(labels), figsize=(2.6 * len(labels), 4.2), squeeze=False)
    for ax, label in zip(axes[0], labels, strict=True):
        cells = summary["cells"][label]
        names = [s for s in systems if "median" in cells.get(s, {})]
        meds = [cells[s]["median"] for s in names]
        lo = [cells[s]["median"] - cells[s]["min"] for s in names]
        hi = [cells[s]["max"] - cells[s]["median"] for s in names]
        ax.bar(range(len(names)), meds, yerr=[lo, hi], capsize=2,
               color=[COLORS.get(s, "#888") for s in names])
        ax.set_yscale("log")
        ax.set_xticks(range(len(names)), [systems[s] for s in names], rotation=60, ha="right", fontsize=7)
        unit = next(iter(cells.values()))["unit"]
        ax.set_title(f"{label} ({unit})", fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
    fig.suptitle(f"lower is better; medians of {summary['runs']} runs, {summary['date']}, "
                 f"{summary['machine'].get('nproc')} cores", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
