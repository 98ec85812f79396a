"""An app for ``resonate serve --app ... --workers N`` (tests/test_supervisor.py).

``resonate worker`` imports this file and runs what it registers; the instance here is never started,
so it only names the daemon: the socket the supervisor puts in RESONATE_SOCKET, else argv[1].
"""

from __future__ import annotations

import os
import sys

from resonate import Context, Resonate

SOCKET = os.environ.get("RESONATE_SOCKET") or (sys.argv[1] if len(sys.argv) > 1 else None)
resonate = Resonate.remote(group="supervised", socket=SOCKET)


@resonate.register
def whoami(ctx: Context) -> int:
    return os.getpid()
