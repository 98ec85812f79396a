"""``python warm_daemon.py ARGS...``: a zygote that forks daemons on request, for kill/restart loops.

It imports the daemon once (most of a cold start) and prints ``warm``. Each line on stdin forks a child
that runs ``python -m resonate_daemon ARGS...``; the zygote prints the child's pid, reaps it when it dies
and prints ``exited CODE``. The store and socket are opened only in the child, so a restart costs a fork.
"""

from __future__ import annotations

import os
import sys

from resonate_daemon.__main__ import main

print("warm", flush=True)
for _ in sys.stdin:
    pid = os.fork()
    if pid == 0:
        os._exit(main(sys.argv[1:]))
    print(pid, flush=True)
    _, status = os.waitpid(pid, 0)
    print("exited", os.waitstatus_to_exitcode(status), flush=True)
