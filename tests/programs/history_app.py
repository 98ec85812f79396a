"""A worker app for the history tests: ``resonate worker tests/programs/history_app.py``.

``held(gate)`` runs a step that waits until the file ``gate`` exists (bounded), so a test can look at a
step while it is in flight, then let it finish.
"""

from __future__ import annotations

import os
import time
from typing import Any

from resonate import Context, Resonate

resonate = Resonate.local()


def wait_for(ctx: Context, gate: str) -> str:
    deadline = time.monotonic() + 60
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.02)  # the workload: a step that takes as long as the test holds it
    return "released"


def double(ctx: Context, x: int) -> int:
    return 2 * x


@resonate.register
def held(ctx: Context, gate: str) -> Any:
    a = yield ctx.run(double, 21)
    b = yield ctx.run(wait_for, gate)
    return [a, b]
