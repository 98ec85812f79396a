"""Client built ONLY on the official Resonate Python SDK 0.6.7 (PyPI ``resonate-sdk==0.6.7``).

Companion of ``official_worker.py`` for compatibility tests of our daemon against the legacy Resonate
server API (docs/official-sdk-wire.md). It is not collected by pytest and imports nothing from this
repository. Every mode prints exactly one JSON line on stdout and exits 0 on success.

Modes (run with the SDK venv's python, e.g. bench/.venvs/resonate06/bin/python):

    official_client.py factorial --id fact-10 --n 10
        resonate.options(target="poll://any@<group>").rpc(id, "factorial", n): creates the root
        invocation promise, subscribes to it, blocks until a worker resolved it.
        Prints {"id": "fact-10", "result": 3628800}.

    official_client.py human-start --id hitl-1
        begin_rpc(id, "wait_for_human") without waiting; then polls GET /promises/<id>.1 (the promise
        that ctx.promise() creates in the worker) until it exists.
        Prints {"id": "hitl-1", "promise_id": "hitl-1.1"}.

    official_client.py human-resolve --promise-id hitl-1.1 --data '{"approved": true}'
        resonate.promises.resolve(id=..., data=<the JSON text>) exactly as a user of the SDK would
        (PATCH /promises/{id}, state RESOLVED, value.data = base64 of the text, no headers).
        Prints {"promise_id": ..., "state": "RESOLVED"}.

    official_client.py result --id hitl-1
        resonate.get(id).result(): waits for any execution's result (subscription + notify).
        Prints {"id": "hitl-1", "result": <value>}.

Connection options (all modes): --host (with scheme), --store-port, --poll-port, --group (the
*worker* group targeted), --client-group (this process's own group; keep it different from the
worker group, or the server may route invocations to this process, which has no functions
registered and would exit), --auth user:password, --timeout seconds. Environment fallbacks:
RESONATE_COMPAT_HOST, RESONATE_COMPAT_STORE_PORT, RESONATE_COMPAT_POLL_PORT, RESONATE_COMPAT_GROUP,
RESONATE_COMPAT_CLIENT_GROUP, RESONATE_COMPAT_AUTH.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--host", default=env("RESONATE_COMPAT_HOST", "http://127.0.0.1"), help="scheme://host"
    )
    common.add_argument("--store-port", default=env("RESONATE_COMPAT_STORE_PORT", "8001"))
    common.add_argument("--poll-port", default=env("RESONATE_COMPAT_POLL_PORT", "8002"))
    common.add_argument(
        "--group", default=env("RESONATE_COMPAT_GROUP", "compat-workers"), help="worker group"
    )
    common.add_argument("--client-group", default=env("RESONATE_COMPAT_CLIENT_GROUP", "compat-clients"))
    common.add_argument("--auth", default=env("RESONATE_COMPAT_AUTH"), help="user:password (HTTP basic)")
    common.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for a result")

    p = argparse.ArgumentParser(description="Official Resonate SDK 0.6.7 client for compatibility tests.")
    sub = p.add_subparsers(dest="mode", required=True)

    f = sub.add_parser("factorial", parents=[common], help="rpc factorial(n) and print the result")
    f.add_argument("--id", default=None, help="root promise id (default: factorial-<n>-<time>)")
    f.add_argument("--n", type=int, default=10)

    hs = sub.add_parser(
        "human-start", parents=[common], help="start wait_for_human, print the awaited promise id"
    )
    hs.add_argument("--id", required=True)

    hr = sub.add_parser("human-resolve", parents=[common], help="resolve a promise with JSON data")
    hr.add_argument("--promise-id", required=True)
    hr.add_argument("--data", default="null", help="JSON text stored as the promise value")

    r = sub.add_parser("result", parents=[common], help="wait for the result of an execution")
    r.add_argument("--id", required=True)
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


def connect(args: argparse.Namespace) -> Any:
    check_official_sdk()
    from resonate import Resonate

    auth = tuple(args.auth.split(":", 1)) if args.auth else None
    return Resonate.remote(
        host=args.host,
        store_port=str(args.store_port),
        message_source_port=str(args.poll_port),
        group=args.client_group,
        auth=auth,  # type: ignore[arg-type]
        log_level="WARNING",
    )


def emit(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


def wait_for_promise(resonate: Any, promise_id: str, timeout: float) -> Any:
    """Poll GET /promises/{id} until it exists (404 raises ResonateStoreError meanwhile)."""
    from resonate.errors import ResonateStoreError

    deadline = time.monotonic() + timeout
    while True:
        try:
            return resonate.promises.get(promise_id)
        except ResonateStoreError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    resonate = connect(args)
    target = f"poll://any@{args.group}"

    if args.mode == "factorial":
        root = args.id or f"factorial-{args.n}-{int(time.time() * 1000)}"
        handle = resonate.options(target=target).begin_rpc(root, "factorial", args.n)
        emit({"id": root, "result": handle.result(timeout=args.timeout)})
    elif args.mode == "human-start":
        resonate.options(target=target).begin_rpc(args.id, "wait_for_human")
        # ctx.promise() is the first child of the root, so its id is "<root>.1".
        promise_id = f"{args.id}.1"
        wait_for_promise(resonate, promise_id, args.timeout)
        emit({"id": args.id, "promise_id": promise_id})
    elif args.mode == "human-resolve":
        json.loads(args.data)  # must be JSON: the worker's SDK json-decodes value.data
        promise = resonate.promises.resolve(id=args.promise_id, data=args.data)
        emit({"promise_id": promise.id, "state": promise.state})
    elif args.mode == "result":
        emit({"id": args.id, "result": resonate.get(args.id).result(timeout=args.timeout)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
