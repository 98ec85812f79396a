"""Memory while many executions are asleep: the daemon's and one worker's RSS with N durable sleeps pending.

    python bench/sleep_memory.py [--n 10000] [--secs 3600]

Starts a daemon (Unix socket, SQLite file) and one worker process, records both RSS when idle, then
creates N invocations of ``nap(secs)`` (plain HTTP creates, no client subscriptions), waits until every
execution has suspended on its sleep (N roots and N sleeps pending, no task out), and reads both RSS
again from /proc. A suspended execution holds nothing in the worker: its memory should not grow with N.
Prints one JSON line (MiB).
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import httpx

HERE = os.path.dirname(os.path.abspath(__file__))
APP = os.path.join(HERE, "..", "tests", "programs", "time_workflows.py")


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--secs", type=float, default=3600)
    args = ap.parse_args()
    d = tempfile.mkdtemp(dir="/tmp", prefix="rm-")
    sock = os.path.join(d, "s.sock")
    daemon = subprocess.Popen([sys.executable, "-m", "resonate_daemon", "--socket", sock, "--db",
                               os.path.join(d, "r.db")], stderr=subprocess.PIPE)
    assert daemon.stderr is not None
    daemon.stderr.readline()
    worker = subprocess.Popen([sys.executable, APP, "worker", "--socket", sock, "--group", "sleepers"],
                              stdout=subprocess.PIPE)
    assert worker.stdout is not None
    worker.stdout.readline()
    local = threading.local()

    def client() -> httpx.Client:
        if not hasattr(local, "c"):
            local.c = httpx.Client(transport=httpx.HTTPTransport(uds=sock), base_url="http://r", timeout=60)
        return local.c

    try:
        idle = {"daemon_rss_mib_idle": rss_mib(daemon.pid), "worker_rss_mib_idle": rss_mib(worker.pid)}
        far = int(time.time() * 1000) + 7 * 86_400_000
        param = {"func": "nap", "args": [args.secs], "kwargs": {}, "version": 0}
        data = base64.b64encode(json.dumps(param).encode()).decode()

        def create(i: int) -> None:
            body = {"id": f"sleep-{i}", "timeout": far, "param": {"headers": {}, "data": data},
                    "tags": {"resonate:invoke": "poll://any@sleepers", "resonate:root": f"sleep-{i}"}}
            r = client().post("/promises", json=body, headers={"idempotency-key": f"sleep-{i}"})
            assert r.status_code in (200, 201), r.text

        start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(create, range(args.n)))
        while True:
            status = client().get("/v1/status").json()
            tasks, promises = status["tasks"], status["promises"]
            out = sum(tasks.get(s, 0) for s in ("INIT", "ENQUEUED", "CLAIMED"))
            if out == 0 and promises.get("PENDING", 0) >= 2 * args.n:
                break
            threading.Event().wait(0.5)  # polling the daemon until every execution is asleep
        asleep_after = time.perf_counter() - start
        print(json.dumps({
            "system": "resonate-daemon", "bench": "sleep_memory", "n_asleep": args.n, **idle,
            "daemon_rss_mib": rss_mib(daemon.pid), "worker_rss_mib": rss_mib(worker.pid),
            "seconds_to_all_asleep": round(asleep_after, 1),
            "db_mib": round(sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d)
                                if f.startswith("r.db")) / 2**20, 1),
        }))
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
