"""A second app for the routing tests: ``resonate worker tests/programs/adder_app.py --group G``.

It registers only ``add`` (and reports which process ran it), while ``cli_app.py`` registers factorial,
greet, approve and fail: two apps sharing one group.
"""

from __future__ import annotations

import os
from typing import Any

from resonate import Context, Resonate

resonate = Resonate.local()


@resonate.register
def add(ctx: Context, a: int, b: int) -> Any:
    return {"sum": a + b, "pid": os.getpid()}
