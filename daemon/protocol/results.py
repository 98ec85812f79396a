"""The results of the protocol's operations (what the engine returns and both transports give back)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from .records import Callback, Promise, Task

T = TypeVar("T")


@dataclass(frozen=True)
class Created:
    """A create: 201 new, 200 deduplicated. ``task`` is set when the caller claimed the invoke task at
    once; ``callback`` when it subscribed at once (``CreateAndSubscribe``)."""

    status: int
    promise: Promise
    task: Task | None = None
    callback: Callback | None = None


@dataclass(frozen=True)
class Completed:
    """A complete: 201 completed now, 200 it already was (deduplicated); the promise as stored."""

    status: int
    promise: Promise


@dataclass(frozen=True)
class Suspension:
    """A fused suspend: ``suspended`` (the task completed), or not because the promises in ``ready``
    were already complete (the execution goes on with them)."""

    suspended: bool
    ready: list[Promise] = field(default_factory=list)


@dataclass(frozen=True)
class Registered:
    """A callback or subscription: ``callback`` is None when the promise is already complete (200)
    or the same registration exists (200)."""

    status: int
    promise: Promise
    callback: Callback | None


@dataclass(frozen=True)
class Claimed:
    """A claimed task, its root promise, the leaf that woke it (resume), and the root's recorded call
    graph (every promise tagged with this root) when the claimer asked for it: the replay's input."""

    task: Task
    root: Promise
    leaf: Promise | None = None
    graph: dict[str, Promise] | None = None


@dataclass(frozen=True)
class TaskResult:
    """A task complete or drop: 201 done now, 200 it already was; the task as stored."""

    status: int
    task: Task


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a search, newest first, and the cursor of the next page (None at the end)."""

    items: list[T]
    cursor: str | None = None


@dataclass(frozen=True)
class Tree:
    """A promise first, then everything below it (by ``resonate:parent``) in the order it was created;
    ``truncated`` when the tree had more promises than asked for. ``tasks``: the tasks of the promises in
    it that are invocations (first claim, attempts, last holder); ``running``: the steps under it that
    workers report running right now (a local step is stored only when it ends)."""

    promises: list[Promise]
    truncated: bool = False
    tasks: list[Task] = field(default_factory=list)
    running: list[Running] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Running:
    """A step a worker is running now, as its heartbeat reports it (kept in memory, never stored)."""

    id: str
    func: str
    started: int
    attempt: int = 1
    process_id: str = ""
    worker: str = ""  # host:pid
    parent: str = ""  # the promise it was called under (a step's own promise does not exist yet)
    root: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "func": self.func, "started": self.started, "attempt": self.attempt,
                "processId": self.process_id, "worker": self.worker, "parent": self.parent, "root": self.root}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Running:
        return cls(id=str(obj["id"]), func=str(obj.get("func") or ""), started=int(obj.get("started") or 0),
                   attempt=int(obj.get("attempt") or 1), process_id=str(obj.get("processId") or ""),
                   worker=str(obj.get("worker") or ""), parent=str(obj.get("parent") or ""),
                   root=str(obj.get("root") or ""))


@dataclass(frozen=True)
class Status:
    """What ``resonate status`` shows: where the store is, what it holds, who is connected."""

    mode: str  # "daemon" | "embedded"
    version: str
    db: str
    promises: dict[str, int]
    tasks: dict[str, int]
    workers: dict[str, list[str]] = field(default_factory=dict)
    pid: int | None = None
    socket: str | None = None
    http: str | None = None
    poll_port: int | None = None
    # group -> process -> the functions it announced (name -> versions; None: it announced none)
    functions: dict[str, dict[str, dict[str, list[int]] | None]] = field(default_factory=dict)
    # invocations no connected worker can take now: {"group", "func", "version", "tasks"}
    waiting: list[dict[str, Any]] = field(default_factory=list)
    problem: str | None = None  # what is wrong with the store now (its file deleted or replaced), if anything
    ui: str | None = None  # the browser UI's address (serve --ui-port), if it has one

    def has_function(self, group: str, func: str) -> bool:
        """Is a worker of ``group`` connected that runs ``func`` (or announced nothing, so runs all)?"""
        return any(fs is None or func in fs for fs in self.functions.get(group, {}).values())

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "version": self.version, "pid": self.pid, "socket": self.socket,
                "db": self.db, "http": self.http, "pollPort": self.poll_port, "promises": dict(self.promises),
                "tasks": dict(self.tasks), "workers": {g: list(p) for g, p in self.workers.items()},
                "functions": self.functions, "waiting": list(self.waiting), "problem": self.problem, "ui": self.ui}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Status:
        return cls(mode=obj.get("mode") or "daemon", version=str(obj.get("version") or ""),
                   db=str(obj.get("db") or ""), promises=dict(obj.get("promises") or {}),
                   tasks=dict(obj.get("tasks") or {}), workers=dict(obj.get("workers") or {}),
                   pid=obj.get("pid"), socket=obj.get("socket"), http=obj.get("http"),
                   poll_port=obj.get("pollPort"), functions=dict(obj.get("functions") or {}),
                   waiting=list(obj.get("waiting") or []),
                   problem=str(obj["problem"]) if obj.get("problem") else None,
                   ui=str(obj["ui"]) if obj.get("ui") else None)


@dataclass(frozen=True)
class Collected:
    """What a garbage collection deleted (or, ``dry_run``, would delete): whole finished call graphs
    and standalone promises older than ``before`` (ms since the epoch), with their tasks and callbacks;
    ``reclaimed``: bytes the file gave back; ``size``: the database's size after, in bytes."""

    promises: int = 0
    tasks: int = 0
    callbacks: int = 0
    reclaimed: int = 0
    size: int = 0
    before: int = 0
    dry_run: bool = False

    def __add__(self, other: Collected) -> Collected:
        return Collected(self.promises + other.promises, self.tasks + other.tasks, self.callbacks + other.callbacks,
                         self.reclaimed + other.reclaimed, other.size or self.size, self.before or other.before,
                         self.dry_run or other.dry_run)

    def to_json(self) -> dict[str, Any]:
        return {"promises": self.promises, "tasks": self.tasks, "callbacks": self.callbacks,
                "reclaimedBytes": self.reclaimed, "sizeBytes": self.size, "before": self.before,
                "dryRun": self.dry_run}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Collected:
        return cls(int(obj.get("promises") or 0), int(obj.get("tasks") or 0), int(obj.get("callbacks") or 0),
                   int(obj.get("reclaimedBytes") or 0), int(obj.get("sizeBytes") or 0), int(obj.get("before") or 0),
                   bool(obj.get("dryRun")))


__all__ = ["Collected", "Created", "Completed", "Registered", "Claimed", "TaskResult", "Page", "Tree", "Running", "Status"]
