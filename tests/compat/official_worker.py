"""Worker process built ONLY on the official Resonate Python SDK 0.6.7 (PyPI ``resonate-sdk==0.6.7``).

It is used by compatibility tests to check that our daemon speaks the legacy Resonate server API
(docs/official-sdk-wire.md). It is not collected by pytest (no ``test_`` prefix) and must not import
anything from this repository.

It registers two functions and then serves tasks forever:

* ``factorial(ctx, n)``: recursive; each step is a durable remote call
  ``ctx.rpc("factorial", n - 1)`` targeted at ``poll://any@<group>``, so every level is a separate
  invocation that any worker of the group may execute (the parent suspends meanwhile).
* ``wait_for_human(ctx)``: creates a promise with ``ctx.promise()`` (id ``<root id>.1``), waits for
  something outside (a human, ``official_client.py human-resolve``, or ``resonate promises resolve``)
  to resolve it, and returns the data it was resolved with.

How to run (Python 3.12 venv with the official SDK, e.g. bench/.venvs/resonate06):

    bench/.venvs/resonate06/bin/python tests/compat/official_worker.py \
        --host http://127.0.0.1 --store-port 8001 --poll-port 8002 --group compat-workers

The SDK talks to ``{host}:{store-port}`` for the promise/task API and holds a server-sent-events
stream on ``{host}:{poll-port}/{group}/{pid}``. ``--host`` must include the scheme. Every option
falls back to an environment variable (``RESONATE_COMPAT_HOST``, ``RESONATE_COMPAT_STORE_PORT``,
``RESONATE_COMPAT_POLL_PORT``, ``RESONATE_COMPAT_GROUP``, ``RESONATE_COMPAT_PID``,
``RESONATE_COMPAT_AUTH`` as ``user:password`` for HTTP basic auth, the only scheme SDK 0.6.7 has).
When started it prints one JSON line ``{"ready": true, "group": ..., "pid": ...}`` on stdout, then
blocks until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from typing import Any


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(description="Official Resonate SDK 0.6.7 worker for compatibility tests.")
    p.add_argument(
        "--host", default=env("RESONATE_COMPAT_HOST", "http://127.0.0.1"), help="scheme://host, no port"
    )
    p.add_argument("--store-port", default=env("RESONATE_COMPAT_STORE_PORT", "8001"), help="HTTP API port")
    p.add_argument("--poll-port", default=env("RESONATE_COMPAT_POLL_PORT", "8002"), help="SSE poll port")
    p.add_argument("--group", default=env("RESONATE_COMPAT_GROUP", "compat-workers"), help="worker group")
    p.add_argument("--pid", default=env("RESONATE_COMPAT_PID"), help="process id (default: random uuid hex)")
    p.add_argument("--auth", default=env("RESONATE_COMPAT_AUTH"), help="user:password for HTTP basic auth")
    p.add_argument(
        "--ttl", type=int, default=int(env("RESONATE_COMPAT_TTL", "10")), help="task lease, seconds"
    )
    p.add_argument("--log-level", default=env("RESONATE_COMPAT_LOG_LEVEL", "WARNING"))
    return p.parse_args(argv)


def check_official_sdk() -> None:
    """Exit unless `import resonate` is the official resonate-sdk 0.6.7 (not this repo's package)."""
    import importlib.metadata as md
    from pathlib import Path

    import resonate

    try:
        dist = md.distribution("resonate-sdk")
    except md.PackageNotFoundError:
        sys.exit(f"resonate-sdk is not installed in {sys.executable}")
    expected = Path(str(dist.locate_file("resonate/__init__.py"))).resolve()
    if dist.version != "0.6.7" or Path(resonate.__file__).resolve() != expected:
        sys.exit(
            f"needs the official resonate-sdk 0.6.7, got {dist.version} with resonate from {resonate.__file__}"
        )


def build(args: argparse.Namespace) -> Any:
    # Imported here so that `--help` works even where the SDK is not installed.
    check_official_sdk()
    from resonate import Context, Resonate

    auth = tuple(args.auth.split(":", 1)) if args.auth else None
    resonate = Resonate.remote(
        host=args.host,
        store_port=str(args.store_port),
        message_source_port=str(args.poll_port),
        group=args.group,
        pid=args.pid,
        auth=auth,  # type: ignore[arg-type]
        ttl=args.ttl,
        log_level=args.log_level,
    )
    target = f"poll://any@{args.group}"

    def factorial(ctx: Context, n: int) -> Any:
        if n <= 1:
            return 1
        # ctx.rpc creates the child promise "<ctx.id>.1" tagged resonate:invoke=<target>;
        # the parent suspends (callback) until a worker of the group resolves it.
        r = yield ctx.rpc("factorial", n - 1).options(target=target)
        return n * r

    def wait_for_human(ctx: Context) -> Any:
        # ctx.promise() returns a handle (RFI); yielding the handle waits for its value.
        p = yield ctx.promise()
        data = yield p
        return data

    resonate.register(factorial, name="factorial", version=1)
    resonate.register(wait_for_human, name="wait_for_human", version=1)
    return resonate


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    resonate = build(args)
    resonate.start()

    stop = threading.Event()

    def _stop(_signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)

    print(json.dumps({"ready": True, "group": args.group, "pid": resonate._pid}), flush=True)
    while not stop.wait(0.5):
        pass
    # The SDK's threads are daemons; exiting the process is the shutdown.
    return 0


if __name__ == "__main__":
    sys.exit(main())
