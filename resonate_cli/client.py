"""Where a command's promises live: a daemon (remote mode) or the database file in this process (embedded).

Every command opens its client once, here, through the SDK's public constructors: if a daemon answers at
the socket or URL (``resonate.remote.probe``), ``Resonate.remote`` talks to it. Otherwise, unless a socket
or URL was named (``--socket``, ``--url`` or their environment variables: then it is an error, exit 4),
the command works embedded on the database file with ``Resonate.local`` (the engine in this process,
holding the file's lock), and says so on stderr. Commands then make SDK calls on ``Client.resonate``; no
store, engine or HTTP path here.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass, field, replace
from types import ModuleType
from typing import Any

from resonate_daemon.paths import default_socket_path, display_db, is_db_url, resolve_db
from resonate_daemon.protocol.results import Status

from resonate import Registry, Resonate
from resonate.errors import InvalidRequest, StoreLocked, Unreachable
from resonate.remote import probe

# The group the CLI's own connection joins in daemon mode. Never a group workers serve: a task sent to
# the CLI would be claimed by a process that registers no functions and rejected.
CLI_GROUP = "resonate-cli"
PROBE_TIMEOUT_S = 2.0
CLI_RETRY_S = 2.0  # a CLI request retries connection errors this long, so an absent daemon shows fast


class NeedsDaemon(Exception):
    """The command only makes sense with a daemon (a worker, stop, --target)."""




@dataclass(frozen=True)
class Target:
    """Where to look, as the global flags said (None: default / environment)."""

    socket: str | None = None
    url: str | None = None
    token: str | None = None
    db: str | None = None
    ca_file: str | None = None  # the CA an https:// daemon's certificate must chain to

    @property
    def socket_path(self) -> str:
        return os.path.abspath(self.socket) if self.socket else default_socket_path()

    @property
    def db_path(self) -> str:
        """The database file (absolute), or a PostgreSQL URL as given."""
        return resolve_db(self.db)

    @property
    def db_shown(self) -> str:
        """The database as people see it (and as a daemon reports it): a URL without its password."""
        return display_db(self.db_path)

    @property
    def where(self) -> str:
        return self.url or self.socket_path

    def probe(self) -> Status | None:
        """The daemon's status if one answers here within a couple of seconds, else None."""
        found: Status | None = probe(socket=self.socket_path, url=self.url, token=self.token,
                                     ca_file=self.ca_file, timeout=PROBE_TIMEOUT_S)
        return found

    def remote(self, *, group: str = CLI_GROUP, registry: Registry | None = None,
               dependencies: dict[str, Any] | None = None, retry_for: float = CLI_RETRY_S) -> Resonate:
        return Resonate.remote(group, socket=self.socket_path, url=self.url, token=self.token, ca_file=self.ca_file,
                               registry=registry, dependencies=dependencies, retry_for=retry_for)


@dataclass
class Client:
    """One command's way in: the SDK client, and whether it goes through a daemon or is embedded."""

    resonate: Resonate
    mode: str  # "daemon" | "embedded"
    target: Target
    daemon_status: Status | None = None
    app: ModuleType | None = field(default=None)
    read_only: bool = False  # embedded on a file another process holds: reads only
    holder: int = 0  # that process's pid, as its lock file says
    missing: bool = False  # a read on a database file that does not exist: answered from an empty store

    @property
    def daemon(self) -> bool:
        return self.mode == "daemon"

    def status(self) -> Status:
        """The daemon's status as the probe read it, or the embedded database's."""
        if self.daemon_status is not None:
            return self.daemon_status
        return replace(self.resonate.status(), db=self.target.db_shown)

    def close(self) -> None:
        """Stop the runtime if the command started it, and release the socket or the database lock."""
        self.resonate.stop()


def open_client(target: Target, *, app: ModuleType | None = None, require_daemon: bool = False,
                worker_group: str | None = None, read: bool = False) -> Client:
    """Pick the store once: a daemon that answers (and serves the requested --db), else embedded.

    ``worker_group``: through a daemon, this process joins that group (once started) as a worker of the
    app's functions, instead of the CLI's own group that serves nothing. ``read``: the command only reads,
    so a file another process holds (an ``invoke --app`` running) is opened read-only rather than refused."""
    status = answered = target.probe()
    if status is not None and target.db and status.db not in ("", target.db_shown):
        status = None  # a daemon is up, but on another database than the one asked for: use that file
    registry, deps = app_registry(app) if app is not None else (None, None)
    if status is not None:
        client = target.remote(group=worker_group or CLI_GROUP, registry=registry, dependencies=deps)
        return Client(client, "daemon", target, status, app)
    if answered is None and (target.url or target.socket):  # asked for by name: never a silent fallback
        how = "--url/RESONATE_URL" if target.url else "--socket/RESONATE_SOCKET"
        raise Unreachable(f"no resonate daemon answers at {target.where} (given by {how}); start one there "
                          "with `resonate serve`, or leave it out to use the database file directly")
    if require_daemon:
        raise NeedsDaemon(f"no resonate daemon answers at {target.socket_path}; start one with `resonate serve`")
    url = is_db_url(target.db_path)  # PostgreSQL: no file to look at; the store says what is wrong
    if read and app is None and not url and not os.path.exists(target.db_path):
        # Nothing stored there (yet, or a typo in --db): answer from an empty store, say so, and create
        # nothing: the file (and its folder) is made by the first command that writes.
        return Client(Resonate.local(), "embedded", target, None, None, missing=True)
    if read and app is None and (url or os.path.isfile(target.db_path)):
        # A command that only reads never takes the file's lock (an `invoke --app` starting now must not
        # find it taken): it reads a snapshot beside whoever holds it. A file of an older schema is
        # migrated by a normal open, below.
        # A PostgreSQL database without our tables yet (InvalidRequest) gets them from the normal open.
        with contextlib.suppress(*((StoreLocked, InvalidRequest) if url else (StoreLocked,))):
            holder = 0 if url else _held(target.db_path)
            return Client(Resonate.local(target.db_path, read_only=True), "embedded", target, None, None,
                          read_only=holder != 0, holder=holder)
    try:
        client = Resonate.local(target.db_path, registry=registry, dependencies=deps)
    except StoreLocked as exc:
        raise StoreLocked(
            f"{exc} -- and no daemon answers at {target.socket_path}. If a daemon holds it, pass its "
            "--socket (or --url); otherwise wait for the other command to finish.") from None
    return Client(client, "embedded", target, None, app)


def _held(path: str) -> int:
    """The pid of the process that seems to hold the database file (the pid its lock file names, if
    alive), else 0. Only for the notice: taking the lock to find out would, for that instant, refuse
    the process starting."""
    try:
        with open(path + ".lock") as f:
            pid = int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0
    if pid <= 0 or pid == os.getpid():
        return 0
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return 0
    except PermissionError:
        return pid
    return pid


# -- apps ---------------------------------------------------------------------------------------

def load_app(spec: str) -> ModuleType:
    """Import an app: a module path (``pkg.mod``) or a file (``examples/factorial.py``)."""
    if spec.endswith(".py") or os.sep in spec:
        path = os.path.abspath(spec)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"app file {spec!r} not found")
        directory = os.path.dirname(path)
        if directory not in sys.path:
            sys.path.insert(0, directory)  # so the app's sibling imports work, as `python app.py` would
        name = os.path.splitext(os.path.basename(path))[0]
        if name in sys.modules and getattr(sys.modules[name], "__file__", None) == path:
            return sys.modules[name]
        module_spec = importlib.util.spec_from_file_location(name, path)
        assert module_spec is not None and module_spec.loader is not None
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
        return module
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    return importlib.import_module(spec)


def app_registry(module: ModuleType) -> tuple[Registry, dict[str, Any]]:
    """The functions (and dependencies) the app registered on its ``Resonate`` instance(s).

    The app's own instance is usually ``Resonate.local()`` in memory; we never start it. We run its
    registry on our client instead, so the same functions run on the CLI's store. The app's instances
    are stopped, which releases what they opened: an app that says ``Resonate.local(path="app.db")``
    holds that file's lock from the moment it is imported, and ``--db app.db`` must be able to open it.
    """
    found = [v for v in vars(module).values() if isinstance(v, Resonate)]
    if not found:
        raise LookupError(f"{module.__name__} has no Resonate instance at module level "
                          "(expected e.g. `resonate = Resonate.local()`)")
    for inst in found:
        inst.stop()
    if len(found) == 1:
        return found[0].registry, found[0].dependencies
    merged = Registry()
    deps: dict[str, Any] = {}
    for inst in found:
        deps.update(inst.dependencies)
        for name, version, func in inst.registry.entries():
            merged.add(func, name, version)
    return merged, deps
