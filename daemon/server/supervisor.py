"""``resonate serve --app APP --workers N [--reload]``: the daemon keeps N worker processes running.

Each worker is ``python -m resonate_cli worker APP --group G --socket SOCKET``, a subprocess: this
package imports neither ``resonate`` nor ``resonate_cli`` (ARCHITECTURE.md), and a crashing app must
not take the daemon down. The supervisor

- starts the workers once the daemon's socket listens (``serve`` calls ``start`` then);
- restarts a worker that dies, after a backoff that doubles while it keeps dying young;
- with ``reload=True`` watches the app's files (watchfiles, in a thread) and restarts every worker on
  a change;
- on shutdown sends SIGTERM (workers hand their tasks back), waits a bounded time, then SIGKILL.

Each start, exit and restart is one line on stderr, like the daemon's own "listening" line.

Example::

    sup = Supervisor("examples/factorial.py", workers=2, socket="/tmp/r/d.sock", reload=True)
    sup.start()
    ...
    sup.stop()
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

BACKOFF_FIRST_S = 0.2  # a worker that crashed once is back almost at once
BACKOFF_MAX_S = 5.0  # one that crashes at import time retries every 5 s, not in a hot loop
HEALTHY_AFTER_S = 10.0  # a worker that lived this long starts its next backoff from the first step again
STOP_TIMEOUT_S = 5.0  # SIGTERM, then this long to hand tasks back, then SIGKILL
CHECK_INTERVAL_S = 0.1  # how often the monitor looks for dead workers and due restarts


@dataclass
class _Slot:
    """One of the N worker positions: the process in it now, and its crash history."""

    index: int
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    backoff_s: float = 0.0
    due_at: float | None = None  # when a dead worker is started again
    pids: list[int] = field(default_factory=list)  # every pid this slot has had, newest last


def watch_paths(app: str) -> list[str]:
    """What ``--reload`` watches: a file app's directory, or the package directory of a module path.

    A file app's whole directory (its ``.py`` files) because editors save by renaming a new file over
    the old one, which a watch on the file itself would lose, and because ``resonate worker`` puts that
    directory on ``sys.path`` so sibling modules are part of the app. A module path is found without
    importing it (``find_spec`` of the top-level name only imports nothing).
    """
    if app.endswith(".py") or os.sep in app:
        return [os.path.dirname(os.path.abspath(app))]
    top = app.split(".", 1)[0]
    added = os.getcwd() not in sys.path
    if added:
        sys.path.insert(0, os.getcwd())  # where `resonate worker` looks too
    try:
        spec = importlib.util.find_spec(top)
    finally:
        if added:
            sys.path.remove(os.getcwd())
    if spec is None:
        raise ValueError(f"cannot find the app module {app!r} to watch")
    if spec.submodule_search_locations:
        return list(spec.submodule_search_locations)
    if spec.origin and os.path.isfile(spec.origin):
        return [os.path.dirname(spec.origin)]
    raise ValueError(f"app module {app!r} has no files to watch")


class Supervisor:
    """Keeps ``workers`` processes of ``resonate worker APP`` running for the daemon on ``socket``."""

    def __init__(self, app: str, *, workers: int, socket: str, group: str = "default", reload: bool = False,
                 stop_timeout_s: float = STOP_TIMEOUT_S) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        self.app = app
        self.socket = socket
        self.group = group
        self.reload = reload
        self.stop_timeout_s = stop_timeout_s
        self.restarts = 0  # crash restarts; reloads are counted in `reloads`
        self.reloads = 0
        self._slots = [_Slot(i) for i in range(workers)]
        self._lock = threading.RLock()  # guards the slots: the monitor, the watcher and stop() all touch them
        self._stopping = threading.Event()
        self._stopped = False
        self._threads: list[threading.Thread] = []
        self._paths = watch_paths(app) if reload else []  # fail now, not in the watcher thread

    @property
    def command(self) -> list[str]:
        return [sys.executable, "-m", "resonate_cli", "worker", self.app, "--group", self.group,
                "--socket", self.socket]

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def pids(self) -> list[int]:
        """The live workers' process ids."""
        with self._lock:
            return [s.proc.pid for s in self._slots if s.proc is not None and s.proc.poll() is None]

    def start(self) -> None:
        """Start the workers, the monitor and (with reload) the file watcher. Returns at once."""
        with self._lock:
            if self._stopping.is_set():
                return  # a signal arrived while the daemon was starting
            for slot in self._slots:
                self._spawn(slot)
        self._thread(self._monitor, "resonate-supervisor")
        if self.reload:
            self._thread(self._watch, "resonate-reload")
            _say(f"watching {', '.join(self._paths)} for changes")

    def stop(self) -> None:
        """SIGTERM every worker, wait up to ``stop_timeout_s``, SIGKILL the rest. Safe to call twice."""
        self._stopping.set()
        with self._lock:
            if not self._stopped:
                self._terminate([s for s in self._slots if s.proc is not None])
                self._stopped = True
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout=self.stop_timeout_s)

    def restart_all(self, reason: str) -> None:
        """Stop every worker (SIGTERM, bounded) and start a fresh one in each slot."""
        with self._lock:
            if self._stopping.is_set():
                return
            self.reloads += 1
            _say(f"{reason}: restarting {len(self._slots)} worker(s)")
            self._terminate([s for s in self._slots if s.proc is not None])
            for slot in self._slots:
                slot.backoff_s, slot.due_at = 0.0, None
                self._spawn(slot)

    # -- internals --------------------------------------------------------------------------------

    def _thread(self, target: object, name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)  # type: ignore[arg-type]
        t.start()
        self._threads.append(t)

    def _spawn(self, slot: _Slot) -> None:
        # The worker's own environment plus the socket, so an app that calls Resonate.remote() itself
        # reaches this daemon. A process group of its own: Ctrl+C in the terminal reaches the daemon
        # only, which then stops the workers in order (else they would exit and be "restarted").
        env = {**os.environ, "RESONATE_SOCKET": self.socket}
        try:
            slot.proc = subprocess.Popen(self.command, env=env, stdin=subprocess.DEVNULL, process_group=0)
        except OSError as exc:
            _say(f"worker {slot.index} could not start: {exc}")
            slot.proc = None
            self._schedule(slot)
            return
        slot.started_at = time.monotonic()
        slot.due_at = None
        slot.pids.append(slot.proc.pid)
        _say(f"worker {slot.index} started (pid {slot.proc.pid}, group {self.group!r}, app {self.app})")

    def _schedule(self, slot: _Slot) -> None:
        lived = time.monotonic() - slot.started_at
        if slot.backoff_s == 0.0 or lived >= HEALTHY_AFTER_S:
            slot.backoff_s = BACKOFF_FIRST_S
        else:
            slot.backoff_s = min(slot.backoff_s * 2, BACKOFF_MAX_S)
        slot.due_at = time.monotonic() + slot.backoff_s

    def _monitor(self) -> None:
        while not self._stopping.wait(CHECK_INTERVAL_S):
            with self._lock:
                if self._stopping.is_set():
                    return
                now = time.monotonic()
                for slot in self._slots:
                    if slot.proc is not None and (code := slot.proc.poll()) is not None:
                        pid, slot.proc = slot.proc.pid, None
                        self._schedule(slot)
                        _say(f"worker {slot.index} (pid {pid}) exited with {_describe(code)}; "
                             f"restarting in {slot.backoff_s:g}s")
                    elif slot.proc is None and slot.due_at is not None and now >= slot.due_at:
                        self.restarts += 1
                        _say(f"restart #{self.restarts}: worker {slot.index}")
                        self._spawn(slot)

    def _watch(self) -> None:
        import watchfiles  # here, not at module level: only --reload needs it

        for changes in watchfiles.watch(*self._paths, watch_filter=watchfiles.PythonFilter(),
                                        stop_event=self._stopping, raise_interrupt=False):
            if self._stopping.is_set():
                return
            names = sorted({os.path.relpath(path) for _, path in changes})
            self.restart_all(f"changed: {', '.join(names[:3])}{' ...' if len(names) > 3 else ''}")

    def _terminate(self, slots: list[_Slot]) -> None:
        procs = [s.proc for s in slots if s.proc is not None]
        for slot in slots:
            slot.proc = None
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout_s
        for proc in procs:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _say(f"worker pid {proc.pid} did not stop within {self.stop_timeout_s:g}s: SIGKILL")
                proc.kill()
                proc.wait()


def _describe(code: int) -> str:
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def _say(text: str) -> None:
    print(f"resonate supervisor: {text}", file=sys.stderr, flush=True)
