"""``resonate gc``: delete, now, the finished workflows older than a duration (a daemon does this on its own
for what is older than its ``--retention``), and give the database file's free pages back."""

from __future__ import annotations

from datetime import datetime

import typer
from resonate_daemon.protocol.results import Collected

from .output import View, out, output
from .session import parse_duration, using


def _bytes(n: int) -> str:
    size = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} bytes"  # pragma: no cover


@output()
def gc(ctx: typer.Context,
       older_than: str = typer.Option(..., "--older-than", metavar="DURATION",
                                      help="Completed longer ago than this: 7d, 12h, 30m, 0s (everything completed)."),
       dry_run: bool = typer.Option(False, "--dry-run", help="Count what would be deleted; delete nothing.")) -> View:
    """Delete the workflows (whole call graphs) and standalone promises that completed longer ago than
    --older-than, with their tasks and callbacks, and give the database file's free pages back. Never a
    pending promise, nothing of a workflow still running, never a schedule. Through the daemon if one
    runs, else on the database file.

    Example: resonate gc --older-than 30d --dry-run
    """
    seconds = parse_duration(older_than)
    assert seconds is not None
    with using(ctx) as client:
        done = client.resonate.gc(seconds, dry_run=dry_run)
    return View(done.to_json(), lambda: _human(done))


def _human(done: Collected) -> None:
    cutoff = datetime.fromtimestamp(done.before / 1000).strftime("%Y-%m-%d %H:%M:%S")
    counts = f"{done.promises} promises, {done.tasks} tasks, {done.callbacks} callbacks"
    if done.dry_run:
        out.print(f"would delete {counts} (completed before {cutoff}); nothing deleted (--dry-run)", highlight=False)
        return
    out.print(f"deleted {counts} (completed before {cutoff}); gave back {_bytes(done.reclaimed)}, "
              f"the database is now {_bytes(done.size)}", highlight=False)
