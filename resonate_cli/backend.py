"""Where a command's promises live: a daemon (remote mode) or the database file in this process (embedded).

Every command picks its backend once, here: if a daemon answers at the socket/URL, the SDK's remote
mode talks to it; otherwise the command works embedded on the database file through ``Resonate.local``
semantics (the engine in this process, holding the file's lock). The few reads the SDK does not offer
(children, callbacks, status, tasks, workers) are small functions below: ``/v1`` endpoints over the
remote transport, or the engine's read methods in embedded mode. No SQL, no sockets.
"""

from __future__ import annotations

import gc
import importlib
import importlib.util
import os
import sys
import urllib.parse
import warnings
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from resonate_daemon import errors as api
from resonate_daemon.config import default_db_path, default_socket_path
from resonate_daemon.records import Callback, Promise, Task

from resonate import Resonate
from resonate.errors import Unreachable
from resonate.registry import Registry
from resonate.remote import RemoteTransport
from resonate.transport import LocalTransport

# The group the CLI's own connection joins in daemon mode. Never a group workers serve: a task sent to
# the CLI would be claimed by a process that registers no functions and rejected.
CLI_GROUP = "resonate-cli"
PROBE_TIMEOUT_S = 2.0
CLI_RETRY_S = 2.0  # a CLI request retries connection errors this long, so an absent daemon shows fast


class NeedsDaemon(Exception):
    """The command only makes sense with a daemon (a worker, stop, schedules, --target)."""


@dataclass(frozen=True)
class Target:
    """Where to look, as the global flags said (None: default / environment)."""

    socket: str | None = None
    url: str | None = None
    token: str | None = None
    db: str | None = None

    @property
    def socket_path(self) -> str:
        return os.path.abspath(self.socket) if self.socket else default_socket_path()

    @property
    def db_path(self) -> str:
        return os.path.abspath(self.db) if self.db else default_db_path()

    @property
    def where(self) -> str:
        return self.url or self.socket_path

    def transport(self, retry_for: float = CLI_RETRY_S, timeout: float = 10.0) -> RemoteTransport:
        return RemoteTransport(socket=self.socket_path, url=self.url, token=self.token, retry_for=retry_for,
                               timeout=timeout)


@dataclass
class Backend:
    """One command's way in: ``resonate`` (the SDK client), ``mode`` daemon or embedded, where it points."""

    resonate: Resonate
    transport: Any  # RemoteTransport or LocalTransport: the one ``resonate`` was built on
    mode: str
    where: str
    target: Target
    status_cache: dict[str, Any] | None = None
    app: ModuleType | None = field(default=None)

    @property
    def daemon(self) -> bool:
        return self.mode == "daemon"

    def close(self) -> None:
        """Stop the runtime if a command started it, and release the socket or the database lock."""
        self.resonate.stop()
        try:
            self.transport.close()
        except Exception:  # stop() closed it already
            pass

    # -- reads the SDK does not offer -------------------------------------------------------------
    def children(self, id: str) -> list[Promise]:
        if self.daemon:
            _, body = self.transport.request("GET", f"/v1/promises/{_path(id)}/children")
            return [Promise.from_json(p) for p in body.get("promises", [])]
        self.resonate.promises.get(id)  # NotFound for an unknown parent, as the daemon answers
        return list(self.transport.engine.children_of(id))

    def callbacks(self, id: str) -> list[dict[str, Any]]:
        """Who waits on this promise: ``kind`` resume (a suspended execution) or notify (a caller)."""
        if self.daemon:
            _, body = self.transport.request("GET", f"/v1/promises/{_path(id)}/callbacks")
            return list(body.get("callbacks", []))
        self.resonate.promises.get(id)
        cbs: list[Callback] = self.transport.engine.callbacks_on(id)
        return [dict(cb.to_json(), kind=cb.kind) for cb in cbs]

    def tasks(self, states: tuple[str, ...] | None = None, limit: int = 100) -> list[dict[str, Any]]:
        if self.daemon:
            params: dict[str, Any] = {"limit": limit}
            if states:
                params["state"] = ",".join(states)
            _, body = self.transport.request("GET", "/v1/tasks", params=params)
            return list(body.get("tasks", []))
        found: list[Task] = self.transport.engine.search_tasks(states, limit)
        return [t.to_json() for t in found]

    def status(self) -> dict[str, Any]:
        """The daemon's ``/v1/status``, or the same shape for the embedded database."""
        if self.daemon:
            if self.status_cache is None:
                self.status_cache = dict(self.transport.request("GET", "/v1/status")[1])
            return dict(self.status_cache, mode="daemon")
        stats = self.transport.engine.stats()
        return {"mode": "embedded", "version": _version(), "pid": None, "socket": None,
                "db": self.transport.path, "http": None, "pollPort": None, "promises": stats["promises"],
                "tasks": stats["tasks"], "workers": {}}

    def workers(self) -> dict[str, list[str]]:
        return dict(self.status().get("workers") or {})


def _path(id: str) -> str:
    return urllib.parse.quote(id, safe="")


def _version() -> str:
    from resonate import __version__

    return __version__


def probe(target: Target) -> dict[str, Any] | None:
    """The daemon's status if one answers at the target, else None. Bounded by PROBE_TIMEOUT_S."""
    if not target.url and not os.path.exists(target.socket_path):
        return None
    t = target.transport(retry_for=0, timeout=PROBE_TIMEOUT_S)
    status: dict[str, Any] | None = None
    # httpx leaks the socket object when a Unix-socket connect fails; that is its business, not a warning
    # for our users (and tests run with warnings as errors).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            status = dict(t.request("GET", "/v1/status")[1] or {})
        except (Unreachable, api.ResonateError):
            status = None
        finally:
            t.close()
            gc.collect()
    return status


def daemon_client(target: Target, *, group: str = CLI_GROUP, registry: Registry | None = None,
                  dependencies: dict[str, Any] | None = None,
                  retry_for: float = CLI_RETRY_S) -> tuple[Resonate, RemoteTransport]:
    transport = target.transport(retry_for=retry_for)
    return Resonate(transport, group=group, registry=registry, dependencies=dependencies), transport


def open_backend(target: Target, *, app: ModuleType | None = None, require_daemon: bool = False) -> Backend:
    """Pick the backend once: a daemon that answers (and serves the requested --db), else embedded."""
    status = probe(target)
    if status is not None and target.db and status.get("db") not in (None, target.db_path):
        status = None  # a daemon is up, but on another database than the one asked for
    registry, deps = app_registry(app) if app is not None else (None, None)
    if status is not None:
        client, remote = daemon_client(target)
        return Backend(client, remote, "daemon", target.where, target, status_cache=status, app=app)
    if target.url:
        raise Unreachable(f"no resonate daemon answers at {target.url}")
    if require_daemon:
        raise NeedsDaemon(f"no resonate daemon answers at {target.socket_path}; start one with `resonate serve`")
    try:
        transport = LocalTransport(target.db_path)
    except api.StoreLocked as exc:
        raise api.StoreLocked(
            f"{exc} -- and no daemon answers at {target.socket_path}. If a daemon holds it, pass its "
            "--socket (or --url); otherwise wait for the other command to finish.") from None
    client = Resonate(transport, registry=registry, dependencies=deps)
    return Backend(client, transport, "embedded", target.db_path, target, app=app)


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


def app_instances(module: ModuleType) -> list[Resonate]:
    return [v for v in vars(module).values() if isinstance(v, Resonate)]


def app_registry(module: ModuleType) -> tuple[Registry, dict[str, Any]]:
    """The functions (and dependencies) the app registered on its ``Resonate`` instance(s).

    The app's own instance is usually ``Resonate.local()`` in memory; we never start it. We run its
    registry on our instance instead, so the same functions run on the CLI's backend.
    """
    found = app_instances(module)
    if not found:
        raise LookupError(f"{module.__name__} has no Resonate instance at module level "
                          "(expected e.g. `resonate = Resonate.local()`)")
    if len(found) == 1:
        inst = found[0]
        return inst.registry, dict(getattr(inst, "_dependencies", {}))
    merged = Registry()
    deps: dict[str, Any] = {}
    for inst in found:
        deps.update(getattr(inst, "_dependencies", {}))
        for name in inst.registry.names():
            _, latest = inst.registry.get(name)
            for version in range(1, latest + 1):
                try:
                    func, _ = inst.registry.get(name, version)
                except Exception:
                    continue
                merged.add(func, name, version)
    return merged, deps
