"""``python -m resonate_daemon``: run the daemon without the CLI (tests, supervisors, containers).

The real command line is ``resonate serve``; both build a ServeConfig and call ``serve``. Exit codes:
0 clean shutdown, 2 bad arguments, 3 cannot start (live daemon on the socket, database in use, busy port,
a TLS certificate or key that cannot be loaded).
"""

from __future__ import annotations

import argparse
import sys

from . import errors
from .server.config import ServeConfig
from .server.server import EXIT_STARTUP_FAILURE, serve

EXIT_USAGE = 2


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m resonate_daemon", description="Run the resonate daemon.")
    p.add_argument("--socket", help="Unix socket path (default: under the user runtime dir)")
    p.add_argument("--db", help="SQLite database file (default: under the user data dir)")
    p.add_argument("--http", metavar="[HOST:]PORT", help="also listen on TCP (token required); PORT alone: 127.0.0.1")
    p.add_argument("--poll-port", type=int, metavar="PORT", help="legacy push stream port: GET /{group}/{pid}")
    p.add_argument("--token", help="token for TCP clients (default: generated into DB.token); shows in ps: "
                   "prefer --token-file or RESONATE_TOKEN")
    p.add_argument("--token-file", help="a file (mode 600) holding the token for TCP clients")
    p.add_argument("--tls-cert", metavar="PEM", help="serve https on --http and --poll-port with this certificate "
                   "(chain) file; needs --tls-key")
    p.add_argument("--tls-key", metavar="PEM", help="the certificate's private key (unencrypted PEM, mode 600)")
    p.add_argument("--durability", choices=["full", "normal"], help="SQLite synchronous mode")
    p.add_argument("--max-body", type=int, metavar="BYTES", help="request body limit (default 10 MiB)")
    p.add_argument("--ping-interval", type=float, metavar="SECONDS", help="push stream keep-alive period")
    p.add_argument("--request-timeout", type=float, metavar="SECONDS",
                   help="a TCP request must arrive whole this soon (default 10)")
    p.add_argument("--log-level", help="debug, info, warning (default), error")
    p.add_argument("--app", help="supervise workers running this app (a file or a module path)")
    p.add_argument("--workers", type=int, metavar="N", help="how many worker processes for --app (default 1)")
    p.add_argument("--reload", action="store_true", default=None, help="restart the workers when the app changes")
    p.add_argument("--group", help="the group the supervised workers join (default: default)")
    p.add_argument("--retention", metavar="DURATION", help="delete completed workflows this long after they "
                   "complete: 7d (default), 12h, 30m; off (or 0) keeps everything")
    args = p.parse_args(argv)
    try:
        config = ServeConfig.resolve(socket=args.socket, db=args.db, http=args.http, poll_port=args.poll_port,
                                     token=args.token, token_file=args.token_file, durability=args.durability, max_body=args.max_body,
                                     ping_interval_s=args.ping_interval,
                                     request_timeout_s=args.request_timeout, log_level=args.log_level,
                                     app=args.app, workers=args.workers, reload=args.reload, group=args.group,
                                     tls_cert=args.tls_cert, tls_key=args.tls_key,
                                     retention=args.retention)
    except errors.InvalidRequest as exc:
        print(f"resonate daemon: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return serve(config)
    except errors.ResonateError as exc:  # StartupError, StoreLocked
        print(f"resonate daemon: {exc}", file=sys.stderr)
        return EXIT_STARTUP_FAILURE


if __name__ == "__main__":
    sys.exit(main())
