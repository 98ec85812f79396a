"""The ``Store`` contract: every verb of the protocol, run against every backend.

Written against ``resonate_daemon.store.Store`` only (no backend internals), in the style of huey's
storage tests: one class of contract tests taking a ``store`` fixture parametrized over ``BACKENDS``.
A new backend (PostgreSQL) is one line in ``BACKENDS`` (and one in ``DURABLE`` if it keeps its data in
a place another process can open).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from resonate_daemon import errors
from resonate_daemon.protocol.records import (
    CLAIMED,
    COMPLETED,
    ENQUEUED,
    INIT,
    PENDING,
    REJECTED,
    REJECTED_CANCELED,
    REJECTED_TIMEDOUT,
    RESOLVED,
    TAG_INVOKE,
    TAG_PARENT,
    TAG_ROOT,
    Callback,
    Promise,
    Schedule,
    Task,
    Value,
)
from resonate_daemon.store import Store, open_store


class Backend:
    """One database for one test: ``start`` opens it, ``reopen`` closes and opens the same one again."""

    def __init__(self, target: str, cleanup: Callable[[], None] = lambda: None) -> None:
        self.target = target  # what open_store takes, and what store.location reports
        self._cleanup = cleanup
        self.current: Store | None = None

    def start(self) -> Store:
        self.current = open_store(self.target)
        return self.current

    def reopen(self) -> Store:
        assert self.current is not None
        self.current.close()
        self.current = None
        return self.start()

    def stop(self) -> None:
        if self.current is not None:
            self.current.close()
            self.current = None
        self._cleanup()


def sqlite_file() -> Backend:
    path = tempfile.mkdtemp(prefix="rt-", dir="/tmp")
    return Backend(os.path.join(path, "r.db"), lambda: shutil.rmtree(path, ignore_errors=True))


def postgres(request: pytest.FixtureRequest) -> Backend:
    """A fresh schema of the session's PostgreSQL (``pg_cluster.py``)."""
    return Backend(request.getfixturevalue("pg_url"))


BACKENDS: dict[str, Callable[[pytest.FixtureRequest], Backend]] = {
    "sqlite-file": lambda _: sqlite_file(),
    "sqlite-memory": lambda _: Backend(":memory:"),
    "postgres": postgres,
}
DURABLE = ["sqlite-file", "postgres"]  # data outlives the store object, and one process at a time may hold it


def is_postgres(backend: Backend) -> bool:
    return backend.target.startswith("postgresql://")


@pytest.fixture(params=list(BACKENDS))
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    b = BACKENDS[request.param](request)
    yield b
    b.stop()


@pytest.fixture
def store(backend: Backend) -> Store:
    return backend.start()


# -- records -----------------------------------------------------------------------------------------
def promise(id: str, state: str = PENDING, timeout: int = 10_000, created_on: int = 0,
            tags: dict[str, str] | None = None, **kw: Any) -> Promise:
    return Promise(id=id, state=state, param=kw.pop("param", Value()), value=kw.pop("value", Value()),
                   timeout=timeout, tags=tags or {}, created_on=created_on, **kw)


def child(id: str, parent: str, created_on: int, root: str = "r") -> Promise:
    return promise(id, created_on=created_on, tags={TAG_ROOT: root, TAG_PARENT: parent})


def task(id: str, state: str = INIT, created_on: int = 0, root: str = "r", **kw: Any) -> Task:
    return Task(id=id, counter=kw.pop("counter", 1), root_promise_id=root, type=kw.pop("type", "invoke"),
                state=state, recv="poll://any@default", timeout=kw.pop("timeout", 10_000),
                created_on=created_on, **kw)


def callback(id: str, promise_id: str, created_on: int = 0, kind: str = "resume") -> Callback:
    return Callback(id=id, promise_id=promise_id, root_promise_id="r", recv="poll://any@default",
                    timeout=10_000, created_on=created_on, kind=kind)


def schedule(id: str, next_run_time: int = 1_000, created_on: int = 0, **kw: Any) -> Schedule:
    return Schedule(id=id, cron="*/5 * * * *", promise_id=f"{id}.{{{{.timestamp}}}}", promise_timeout=60_000,
                    next_run_time=next_run_time, created_on=created_on, **kw)


def put(store: Store, *records: Promise | Task | Callback | Schedule) -> None:
    with store.transaction():
        for r in records:
            insert: Any = {Promise: store.insert_promise, Task: store.insert_task,
                           Callback: store.insert_callback, Schedule: store.upsert_schedule}[type(r)]
            insert(r)


def ids(records: list[Any]) -> list[str]:
    return [r.id for r in records]


def nonzero(counts: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in counts.items() if v}


Cursor = tuple[int, str] | None


def pages(search: Callable[[Cursor], tuple[list[Any], Cursor]]) -> list[list[str]]:
    """Every page of a promise search, following cursors until there is none (at most 50)."""
    out: list[list[str]] = []
    cursor = None
    for _ in range(50):
        found, cursor = search(cursor)
        out.append(ids(found))
        if cursor is None:
            return out
    raise AssertionError(f"the search never ended: {out[:5]}...")


FULL = promise("ünïcødé/wf/1/🙂", state=RESOLVED, timeout=2**62, created_on=1_700_000_000_123,
               param=Value({"Content-Type": "application/json", "x/é": "1"}, "eyJhIjoxfQ=="),
               value=Value({"h": "v"}, "InJlc3VsdCI="), tags={TAG_ROOT: "ünïcødé/wf", "k": "ü v"},
               completed_on=1_700_000_000_456, idempotency_key_for_create="ik/create/é",
               idempotency_key_for_complete="ik/complete")
BARE = promise("bare", timeout=0, created_on=0)  # no headers, no tags, no data, no keys


class TestStoreContract:
    # -- promises ---------------------------------------------------------------------------------
    @pytest.mark.parametrize("p", [FULL, BARE, promise("empty-data", param=Value({}, ""))],
                             ids=["full", "bare", "empty-data"])
    def test_a_promise_round_trips_every_field(self, store: Store, p: Promise) -> None:
        put(store, p, promise("other", created_on=5))
        assert store.get_promise(p.id) == p
        assert store.get_promise("missing") is None and store.get_promise("OTHER") is None

    @pytest.mark.parametrize("state, value", [(RESOLVED, Value({"a": "b"}, "ZGF0YQ==")),
                                              (REJECTED_TIMEDOUT, Value())])
    def test_update_promise_stores_the_completion(self, store: Store, state: str, value: Value) -> None:
        before = promise("p/1", created_on=3, tags={"k": "v"}, param=Value({"p": "q"}, "cA=="),
                         idempotency_key_for_create="c")
        put(store, before, promise("p/2"))
        done = Promise(before.id, state, before.param, value, before.timeout, before.tags, before.created_on,
                       completed_on=99, idempotency_key_for_create="c", idempotency_key_for_complete="done")
        with store.transaction():
            store.update_promise(done)
        assert store.get_promise("p/1") == done
        assert store.get_promise("p/2") == promise("p/2")

    def test_promises_of_root_is_every_promise_tagged_with_the_root(self, store: Store) -> None:
        root = promise("r", tags={TAG_ROOT: "r"})
        put(store, root, child("r.1", "r", 1), child("r.1.1", "r.1", 2), child("s.1", "s", 3, root="s"),
            promise("untagged"))
        got = store.promises_of_root("r")
        assert got == {"r": root, "r.1": child("r.1", "r", 1), "r.1.1": child("r.1.1", "r.1", 2)}
        assert store.promises_of_root("nobody") == {}

    def test_children_of_excludes_itself_and_grandchildren_oldest_first(self, store: Store) -> None:
        put(store, child("p", "p", 0), child("p.b", "p", 7), child("p.a", "p", 9), child("p.c", "p", 3),
            child("p.b.x", "p.b", 8), child("q.1", "q", 1))
        assert ids(store.children_of("p")) == ["p.c", "p.b", "p.a"]
        assert store.children_of("p.c") == []

    def test_subtree_is_every_descendant_oldest_first_up_to_limit(self, store: Store) -> None:
        put(store, child("r.b.d", "r.b", 5), child("r", "r", 0), child("r.a", "r", 2), child("r.b", "r", 1),
            child("r.a.c", "r.a", 3), child("r.a.c.e", "r.a.c", 4), child("s.1", "s", 1, root="s"))
        assert ids(store.subtree("r", 100)) == ["r.b", "r.a", "r.a.c", "r.a.c.e", "r.b.d"]
        assert ids(store.subtree("r", 2)) == ["r.b", "r.a"]
        assert ids(store.subtree("r.a", 100)) == ["r.a.c", "r.a.c.e"]
        assert store.subtree("r.b.d", 100) == [] and store.subtree("missing", 100) == []

    def test_subtree_ends_on_a_cycle_of_parent_tags(self, store: Store, backend: Backend) -> None:
        put(store, child("x", "y", 1), child("y", "x", 2), child("x.1", "x", 3))
        result: list[list[str]] = []
        worker = threading.Thread(target=lambda: result.append(ids(store.subtree("x", 1000))), daemon=True)
        worker.start()
        worker.join(timeout=20)
        if worker.is_alive():
            backend.current = None  # still busy in the looping call: leave it open, not hang closing it
            pytest.fail("subtree did not end on a cycle of parent tags")
        assert result == [["y", "x.1"]]

    def test_search_promises_by_id_glob(self, store: Store) -> None:
        names = ["a/1", "a/2", "a/b/3", "ab", "b/a/1", "x[1]", "x[1]/y", "x1", "A/1", "é/[z]"]
        put(store, *(promise(n, created_on=i) for i, n in enumerate(names)))

        def search(glob: str | None) -> list[str]:
            return sorted(ids(store.search_promises(glob, None, None, 100, None)[0]))

        assert search(None) == search("*") == sorted(names)
        assert search("a/*") == ["a/1", "a/2", "a/b/3"]
        assert search("*/1") == ["A/1", "a/1", "b/a/1"]
        assert search("a*3") == ["a/b/3"]
        assert search("a/1") == ["a/1"] and search("a/") == []
        assert search("x[1]") == ["x[1]"]
        assert search("x[1]*") == ["x[1]", "x[1]/y"]
        assert search("*[1]*") == ["x[1]", "x[1]/y"]
        assert search("é/[z]") == search("*[z]") == ["é/[z]"]

    def test_search_promises_by_states_and_tags(self, store: Store) -> None:
        put(store, promise("p", tags={"k": "1"}), promise("r", RESOLVED, tags={"k": "1", "j": "2"}),
            promise("j", REJECTED, tags={"k": "2"}), promise("c", REJECTED_CANCELED))

        def search(states: tuple[str, ...] | None, tags: dict[str, str] | None) -> list[str]:
            return sorted(ids(store.search_promises(None, states, tags, 100, None)[0]))

        assert search((PENDING,), None) == ["p"]
        assert search((REJECTED, REJECTED_CANCELED, REJECTED_TIMEDOUT), None) == ["c", "j"]
        assert search(None, {"k": "1"}) == ["p", "r"]
        assert search(None, {"k": "1", "j": "2"}) == ["r"]
        assert search((PENDING,), {"j": "2"}) == []
        assert search((RESOLVED, REJECTED), {"k": "2"}) == ["j"]

    def test_search_promises_is_newest_first_up_to_limit(self, store: Store) -> None:
        put(store, promise("b", created_on=20), promise("c", created_on=10), promise("a", created_on=30),
            promise("z", created_on=10))
        found, cursor = store.search_promises(None, None, None, 100, None)
        assert ids(found) == ["a", "b", "z", "c"] and cursor is None
        found, cursor = store.search_promises(None, None, None, 2, None)
        assert ids(found) == ["a", "b"] and cursor is not None

    def test_search_promises_pages_through_equal_timestamps(self, store: Store) -> None:
        put(store, *(promise(f"p/{i}", created_on=5) for i in range(7)), promise("p/new", created_on=9),
            promise("p/old", created_on=1), promise("q/0", created_on=5))
        assert pages(lambda cursor: store.search_promises("p/*", None, None, 2, cursor)) == [
            ["p/new", "p/6"], ["p/5", "p/4"], ["p/3", "p/2"], ["p/1", "p/0"], ["p/old"]]
        assert pages(lambda cursor: store.search_promises("p/*", None, None, 4, cursor)) == [
            ["p/new", "p/6", "p/5", "p/4"], ["p/3", "p/2", "p/1", "p/0"], ["p/old"]]

    def test_search_promises_scans_past_many_rows_the_filters_refuse(self, store: Store) -> None:
        put(store, *(promise(f"n/{i:03}", created_on=i, tags={"hit": "yes"} if i % 100 == 7 else {})
                     for i in range(350)))
        tagged = pages(lambda cursor: store.search_promises(None, None, {"hit": "yes"}, 3, cursor))
        assert tagged == [["n/307", "n/207", "n/107"], ["n/007"]]
        globbed = pages(lambda cursor: store.search_promises("*9", (PENDING,), None, 30, cursor))
        assert [n for page in globbed for n in page] == [f"n/{i:03}" for i in range(349, -1, -10)]
        assert [len(page) for page in globbed] == [30, 5]

    def test_search_promises_gives_no_cursor_when_nothing_remains(self, store: Store) -> None:
        put(store, *(promise(f"p/{i}", created_on=i) for i in range(3)), promise("q", created_on=9))
        assert store.search_promises("p/*", None, None, 3, None)[1] is None
        assert store.search_promises(None, None, None, 2, (2, "p/2"))[1] is None

    def test_only_star_is_a_wildcard_in_an_id_glob(self, store: Store) -> None:
        put(store, promise("xabc"), promise("xa?c"), schedule("xabc"), schedule("xa?c"))
        assert ids(store.search_promises("*a?c", None, None, 10, None)[0]) == ["xa?c"]
        assert ids(store.search_schedules("*a?c", 10, None)) == ["xa?c"]

    def test_timed_out_promises_are_pending_earliest_first_inclusive(self, store: Store) -> None:
        put(store, promise("late", timeout=300), promise("early", timeout=100), promise("mid", timeout=200),
            promise("future", timeout=301), promise("done", RESOLVED, timeout=50, completed_on=60),
            promise("timedout", REJECTED_TIMEDOUT, timeout=40, completed_on=40))
        assert ids(store.timed_out_promises(300, 100)) == ["early", "mid", "late"]
        assert ids(store.timed_out_promises(300, 2)) == ["early", "mid"]
        assert ids(store.timed_out_promises(100, 100)) == ["early"]
        assert store.timed_out_promises(99, 100) == []

    def test_next_promise_timeout_is_the_earliest_pending_one(self, store: Store) -> None:
        assert store.next_promise_timeout() is None
        put(store, promise("done", RESOLVED, timeout=5, completed_on=6))
        assert store.next_promise_timeout() is None
        put(store, promise("b", timeout=70), promise("a", timeout=30), promise("c", timeout=90))
        assert store.next_promise_timeout() == 30

    def test_count_promises_by_state(self, store: Store) -> None:
        assert nonzero(store.count_promises_by_state()) == {}
        put(store, promise("a"), promise("b"), promise("c", RESOLVED), promise("d", REJECTED_TIMEDOUT),
            promise("e", REJECTED_TIMEDOUT), promise("f", REJECTED_TIMEDOUT))
        assert nonzero(store.count_promises_by_state()) == {PENDING: 2, RESOLVED: 1, REJECTED_TIMEDOUT: 3}

    # -- tasks ------------------------------------------------------------------------------------
    def test_a_task_round_trips_and_updates(self, store: Store) -> None:
        t = task("t/ü/1", ENQUEUED, 7, root="r/ü", leaf_promise_id="r/ü.1", process_id="pid-1", ttl=30_000,
                 expires_at=2**40, attempt=2, counter=3, type="resume", timeout=2**62)
        put(store, t, task("other"))
        assert store.get_task(t.id) == t and store.get_task("missing") is None
        done = Task(t.id, 4, t.root_promise_id, "resume", COMPLETED, t.recv, t.timeout, t.created_on,
                    leaf_promise_id=None, process_id=None, ttl=0, expires_at=0, attempt=3, completed_on=99)
        with store.transaction():
            store.update_task(done)
        assert store.get_task(t.id) == done
        assert store.get_task("other") == task("other")

    def test_tasks_of_root_are_the_live_ones_oldest_first(self, store: Store) -> None:
        put(store, task("c", CLAIMED, 30), task("a", INIT, 10), task("done", COMPLETED, 5),
            task("b", ENQUEUED, 20), task("other", INIT, 1, root="s"))
        assert ids(store.tasks_of_root("r")) == ["a", "b", "c"]
        assert store.tasks_of_root("nobody") == []

    def test_tasks_of_process_by_states(self, store: Store) -> None:
        put(store, task("c1", CLAIMED, 1, process_id="p1"), task("e1", ENQUEUED, 2, process_id="p1"),
            task("x1", COMPLETED, 3, process_id="p1"), task("c2", CLAIMED, 4, process_id="p2"),
            task("i", INIT, 5))
        assert sorted(ids(store.tasks_of_process("p1", (CLAIMED, ENQUEUED)))) == ["c1", "e1"]
        assert ids(store.tasks_of_process("p1", (COMPLETED,))) == ["x1"]
        assert ids(store.tasks_of_process("p2", (CLAIMED,))) == ["c2"]
        assert store.tasks_of_process("p3", (CLAIMED,)) == []

    def test_tasks_in_states(self, store: Store) -> None:
        put(store, task("c", CLAIMED, 3), task("i", INIT, 1), task("e", ENQUEUED, 2), task("x", COMPLETED, 4))
        assert sorted(ids(store.tasks_in_states((CLAIMED, ENQUEUED)))) == ["c", "e"]
        assert ids(store.tasks_in_states((COMPLETED,))) == ["x"]
        assert sorted(ids(store.tasks_in_states((INIT, ENQUEUED, CLAIMED, COMPLETED)))) == list("ceix")

    def test_expired_tasks_are_claimed_or_enqueued_earliest_first_inclusive(self, store: Store) -> None:
        put(store, task("c", CLAIMED, expires_at=300), task("e", ENQUEUED, expires_at=100),
            task("c2", CLAIMED, expires_at=200), task("later", CLAIMED, expires_at=301),
            task("init", INIT, expires_at=0), task("done", COMPLETED, expires_at=50))
        assert ids(store.expired_tasks(300, 100)) == ["e", "c2", "c"]
        assert ids(store.expired_tasks(300, 1)) == ["e"]
        assert ids(store.expired_tasks(100, 100)) == ["e"]
        assert store.expired_tasks(99, 100) == []

    def test_next_task_expiry_is_the_earliest_out_task(self, store: Store) -> None:
        assert store.next_task_expiry() is None
        put(store, task("init", INIT, expires_at=1), task("done", COMPLETED, expires_at=2))
        assert store.next_task_expiry() is None
        put(store, task("c", CLAIMED, expires_at=500), task("e", ENQUEUED, expires_at=400))
        assert store.next_task_expiry() == 400

    def test_init_tasks_oldest_first_up_to_limit(self, store: Store) -> None:
        put(store, task("i3", INIT, 30), task("i1", INIT, 10), task("e", ENQUEUED, 5), task("i2", INIT, 20),
            task("x", COMPLETED, 1))
        assert ids(store.init_tasks(100)) == ["i1", "i2", "i3"]
        assert ids(store.init_tasks(2)) == ["i1", "i2"]

    def test_search_tasks_newest_first_by_states_up_to_limit(self, store: Store) -> None:
        put(store, task("a", INIT, 10), task("b", CLAIMED, 40), task("c", COMPLETED, 30), task("d", INIT, 20))
        assert ids(store.search_tasks(None, 100)) == ["b", "c", "d", "a"]
        assert ids(store.search_tasks(None, 2)) == ["b", "c"]
        assert ids(store.search_tasks((INIT,), 100)) == ["d", "a"]
        assert ids(store.search_tasks((INIT, COMPLETED), 2)) == ["c", "d"]
        assert store.search_tasks((ENQUEUED,), 100) == []

    def test_count_tasks_by_state(self, store: Store) -> None:
        assert nonzero(store.count_tasks_by_state()) == {}
        put(store, task("a", INIT), task("b", INIT), task("c", CLAIMED), task("d", COMPLETED))
        assert nonzero(store.count_tasks_by_state()) == {INIT: 2, CLAIMED: 1, COMPLETED: 1}

    # -- callbacks --------------------------------------------------------------------------------
    def test_callbacks_round_trip_and_are_listed_per_promise(self, store: Store) -> None:
        resume, notify = callback("cb/ü/1", "p/1", 5), callback("sub/1", "p/1", 6, kind="notify")
        put(store, resume, notify, callback("cb/2", "p/2", 7))
        assert [store.get_callback(i) for i in ("cb/ü/1", "sub/1", "x")] == [resume, notify, None]
        assert sorted(store.callbacks_on("p/1"), key=lambda c: c.id) == [resume, notify]
        assert store.callbacks_on("p/3") == []

    def test_take_callbacks_returns_them_oldest_first_and_deletes_them(self, store: Store) -> None:
        put(store, callback("late", "p", 30), callback("early", "p", 10, kind="notify"),
            callback("mid", "p", 20), callback("elsewhere", "q", 1))
        with store.transaction():
            assert ids(store.take_callbacks("p")) == ["early", "mid", "late"]
        with store.transaction():
            assert store.take_callbacks("p") == []
        assert store.callbacks_on("p") == [] and store.get_callback("mid") is None
        assert store.callbacks_on("q") == [callback("elsewhere", "q", 1)]

    # -- schedules --------------------------------------------------------------------------------
    def test_upsert_schedule_inserts_then_replaces(self, store: Store) -> None:
        s = schedule("s/ü/1", 5_000, 7, description="every five", tags={"k": "v"}, idempotency_key="ik",
                     promise_param=Value({"h": "v"}, "e30="), promise_tags={TAG_ROOT: "x"},
                     last_run_time=4_000)
        put(store, s, schedule("other"))
        assert store.get_schedule(s.id) == s and store.get_schedule("missing") is None
        replaced = schedule(s.id, 9_000, 7, description="changed")
        put(store, replaced)
        assert store.get_schedule(s.id) == replaced and store.get_schedule("other") == schedule("other")
        assert ids(store.search_schedules(None, 100, None)) == ["s/ü/1", "other"]

    def test_delete_schedule_says_whether_it_deleted(self, store: Store) -> None:
        put(store, schedule("a"), schedule("b"))
        with store.transaction():
            assert store.delete_schedule("a") is True
            assert store.delete_schedule("a") is False
            assert store.delete_schedule("missing") is False
        assert store.get_schedule("a") is None and store.get_schedule("b") == schedule("b")

    def test_search_schedules_by_glob_newest_first_with_cursor(self, store: Store) -> None:
        put(store, *(schedule(f"s/{i}", created_on=5) for i in range(5)), schedule("s/new", created_on=9),
            schedule("s[1]", created_on=1), schedule("t/1", created_on=8))
        assert ids(store.search_schedules("s/*", 100, None)) == ["s/new", "s/4", "s/3", "s/2", "s/1", "s/0"]
        assert ids(store.search_schedules("s[1]", 100, None)) == ["s[1]"]
        assert ids(store.search_schedules("*[1]", 100, None)) == ["s[1]"]
        assert ids(store.search_schedules("*1", 100, None)) == ["t/1", "s/1"]
        assert ids(store.search_schedules("s*1*", 100, None)) == ["s/1", "s[1]"]
        first = store.search_schedules(None, 3, None)
        assert ids(first) == ["s/new", "t/1", "s/4"]
        second = store.search_schedules(None, 3, (first[-1].created_on, first[-1].id))
        assert ids(second) == ["s/3", "s/2", "s/1"]
        assert ids(store.search_schedules(None, 3, (5, "s/1"))) == ["s/0", "s[1]"]
        assert store.search_schedules(None, 3, (1, "s[1]")) == []

    def test_due_schedules_and_next_schedule_time(self, store: Store) -> None:
        assert store.next_schedule_time() is None and store.due_schedules(10**15, 100) == []
        put(store, schedule("c", 300), schedule("a", 100), schedule("b", 200), schedule("d", 301))
        assert ids(store.due_schedules(300, 100)) == ["a", "b", "c"]
        assert ids(store.due_schedules(300, 2)) == ["a", "b"]
        assert ids(store.due_schedules(100, 100)) == ["a"] and store.due_schedules(99, 100) == []
        assert store.next_schedule_time() == 100
        with store.transaction():
            store.delete_schedule("a")
        assert store.next_schedule_time() == 200

    # -- transactions -----------------------------------------------------------------------------
    @pytest.mark.parametrize("durable", [True, False])
    def test_a_transaction_that_raises_is_rolled_back(self, store: Store, durable: bool) -> None:
        put(store, promise("kept"), task("kept"), callback("kept", "kept"))
        with pytest.raises(RuntimeError, match="boom"), store.transaction(durable=durable):
            store.insert_promise(promise("lost"))
            store.update_promise(promise("kept", RESOLVED, completed_on=5))
            store.insert_task(task("lost"))
            store.update_task(task("kept", COMPLETED))
            store.take_callbacks("kept")
            store.insert_callback(callback("lost", "kept"))
            store.upsert_schedule(schedule("lost"))
            raise RuntimeError("boom")
        assert store.get_promise("lost") is None and store.get_promise("kept") == promise("kept")
        assert store.get_task("lost") is None and store.get_task("kept") == task("kept")
        assert store.callbacks_on("kept") == [callback("kept", "kept")]
        assert store.get_schedule("lost") is None
        put(store, promise("after"))  # the store is usable after a rollback
        assert store.get_promise("after") == promise("after")

    def test_a_non_durable_transaction_commits(self, store: Store) -> None:
        with store.transaction(durable=False):
            store.insert_promise(promise("relaxed"))
            store.insert_task(task("relaxed"))
        put(store, promise("durable"))
        assert store.get_promise("relaxed") == promise("relaxed")
        assert store.get_task("relaxed") == task("relaxed")
        assert store.get_promise("durable") == promise("durable")

    def test_location_says_where_the_data_lives(self, store: Store, backend: Backend) -> None:
        assert store.location == backend.target

    # -- workflows --------------------------------------------------------------------------------
    def test_search_workflows_is_invoked_tops_filtered_newest_first(self, store: Store) -> None:
        def top(id: str, state: str, at: int, func: str) -> tuple[Promise, Task]:
            p = promise(id, state, created_on=at, tags={TAG_INVOKE: "poll://any@g", TAG_ROOT: id})
            return p, task(f"__invoke:{id}", COMPLETED if state != PENDING else INIT, at, root=id, func=func)

        records: list[Any] = []
        for id, state, at, func in (("a", RESOLVED, 1, "f"), ("b", REJECTED, 2, "f"), ("c", PENDING, 3, "g"),
                                    ("d", REJECTED_TIMEDOUT, 4, "f"), ("e", RESOLVED, 4, "g")):
            records += top(id, state, at, func)
        selfish = promise("s", RESOLVED, created_on=5, tags={TAG_INVOKE: "poll://any@g", TAG_ROOT: "s",
                                                            TAG_PARENT: "s"})  # official SDKs: itself as parent
        records += [selfish, task("__invoke:s", COMPLETED, 5, root="s", func="f")]
        records += [promise("a.1", RESOLVED, created_on=6, tags={TAG_ROOT: "a", TAG_PARENT: "a"}),  # a step
                    promise("rpc", PENDING, created_on=7, tags={TAG_INVOKE: "poll://any@g", TAG_PARENT: "a"}),
                    task("__invoke:rpc", INIT, 7, root="rpc", func="f"),
                    promise("plain", PENDING, created_on=8)]  # not invoked
        put(store, *records)
        assert pages(lambda c: store.search_workflows(None, None, None, 2, c)) == [["s", "e"], ["d", "c"], ["b", "a"]]
        assert store.count_workflows(None, None, None) == 6
        failed = (REJECTED, REJECTED_CANCELED, REJECTED_TIMEDOUT)
        assert ids(store.search_workflows(failed, None, None, 10, None)[0]) == ["d", "b"]
        assert ids(store.search_workflows(None, "g", None, 10, None)[0]) == ["e", "c"]
        assert ids(store.search_workflows((RESOLVED,), "f", 2, 10, None)[0]) == ["s"]
        assert store.count_workflows((RESOLVED,), "f", None) == 2 and store.count_workflows(None, "zzz", None) == 0

    def test_reopen_and_delete_promises(self, store: Store) -> None:
        done = promise("w", REJECTED, created_on=1, value=Value({"h": "v"}, "eA=="), completed_on=5,
                       idempotency_key_for_complete="k")
        put(store, done, child("w.1", "w", 2, root="w"), child("w.2", "w", 3, root="w"),
            task("__invoke:w.2", INIT, 3, root="w.2"), callback("cb", "w.2", 3))
        again = promise("w", PENDING, timeout=99, created_on=1)
        with store.transaction():
            store.reopen_promise(again)
            assert store.delete_promises(["w.2", "nope"]) == 1
        assert store.get_promise("w") == again
        assert ids(store.subtree("w", 10)) == ["w.1"]
        assert store.get_task("__invoke:w.2") is None and store.callbacks_on("w.2") == []
        with store.transaction():
            assert store.delete_promises([f"x{i}" for i in range(1200)]) == 0  # past one statement's parameters


@pytest.mark.parametrize("backend", DURABLE, indirect=True)
class TestDurableStoreContract:
    def test_data_survives_close_and_reopen(self, store: Store, backend: Backend) -> None:
        records = (FULL, BARE, task("t", CLAIMED, 3, process_id="p", expires_at=9),
                   callback("cb", FULL.id, 4), schedule("s", 500, 6, promise_param=Value({"a": "b"}, "eA==")))
        put(store, *records)
        with store.transaction(durable=False):
            store.insert_promise(promise("relaxed", created_on=9))
        reopened = backend.reopen()
        assert reopened.get_promise(FULL.id) == FULL and reopened.get_promise(BARE.id) == BARE
        assert reopened.get_promise("relaxed") == promise("relaxed", created_on=9)
        assert reopened.get_task("t") == records[2] and reopened.callbacks_on(FULL.id) == [records[3]]
        assert reopened.get_schedule("s") == records[4]
        assert nonzero(reopened.count_promises_by_state()) == {RESOLVED: 1, PENDING: 2}

    def test_a_second_process_cannot_open_it(self, store: Store, backend: Backend) -> None:
        probe = ("import sys\nfrom resonate_daemon.errors import StoreLocked\n"
                 "from resonate_daemon.store import open_store\n"
                 "try:\n    open_store(sys.argv[1]).close()\nexcept StoreLocked as exc:\n"
                 "    print(exc.code, exc)\n    sys.exit(3)\nprint('opened')\n")

        def run() -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-c", probe, backend.target], capture_output=True,
                                  text=True, timeout=60)

        proc = run()
        assert proc.returncode == 3, (proc.stdout, proc.stderr)
        assert proc.stdout.startswith("50300 ") and str(os.getpid()) in proc.stdout
        store.close()
        backend.current = None
        proc = run()
        assert (proc.returncode, proc.stdout.strip()) == (0, "opened"), proc.stderr

    def test_read_only_reads_beside_the_holder_and_keeps_nothing(self, store: Store, backend: Backend) -> None:
        put(store, promise("p", created_on=1))
        reader = open_store(backend.target, read_only=True)  # the holder keeps its lock: no StoreLocked
        try:
            version = reader.data_version()
            assert reader.get_promise("p") == promise("p", created_on=1)
            put(store, promise("q", created_on=2))  # the holder writes on while the reader is open
            assert reader.data_version() != version and reader.get_promise("q") is not None
            with reader.transaction():
                reader.insert_promise(promise("ghost"))
                assert reader.get_promise("ghost") is not None  # seen inside its own snapshot...
            assert reader.get_promise("ghost") is None  # ...and never kept
        finally:
            reader.close()
        assert store.get_promise("ghost") is None
        with pytest.raises(errors.InvalidRequest, match="no database file|no resonate database"):
            open_store(backend.target + "-missing", read_only=True)


# -- retention -----------------------------------------------------------------------------------
def done(id: str, completed_on: int, tags: dict[str, str] | None = None, state: str = RESOLVED) -> Promise:
    return promise(id, state=state, tags=tags, completed_on=completed_on)


def step(id: str, parent: str, root: str, completed_on: int | None = None) -> Promise:
    tags = {TAG_ROOT: root, TAG_PARENT: parent}
    return done(id, completed_on, tags) if completed_on is not None else promise(id, tags=tags)


def retention_world() -> list[Any]:
    """What a cutoff of 200 finds: (o) a finished workflow with steps, an rpc child with its own step, a
    retry timer found only by root, tasks and a dead resume callback; (r) a running workflow whose steps
    finished long ago; (late) one that finished after the cutoff; (mixed) finished, but a step still
    pending; (lone) a standalone finished promise; (p) a standalone pending one with a subscription;
    (stray) finished, no parent, but tagged with the running workflow r as its root."""
    inv = {TAG_INVOKE: "poll://any@default"}
    return [
        done("o", 100, {TAG_ROOT: "o", **inv}), step("o.1", "o", "o", 50), step("o.1.1", "o.1", "o", 40),
        done("o.2", 90, {TAG_ROOT: "o.2", TAG_PARENT: "o", **inv}), step("o.2.1", "o.2", "o.2", 80),
        step("o.t", "o.9", "o", 60),
        task("__invoke:o", COMPLETED, root="o"), task("__invoke:o.2", COMPLETED, root="o.2"),
        Callback("__resume:o:p", "p", "o", "poll://any@default", 10_000, 1),
        promise("r", tags={TAG_ROOT: "r", **inv}), step("r.1", "r", "r", 10), task("__invoke:r", CLAIMED, root="r"),
        done("late", 500, {TAG_ROOT: "late"}), step("late.1", "late", "late", 10),
        done("mixed", 100, {TAG_ROOT: "mixed"}), step("mixed.1", "mixed", "mixed"),
        done("lone", 20, state=REJECTED), promise("p"), done("stray", 20, {TAG_ROOT: "r"}),
        Callback("__notify:p:s", "p", "p", "poll://any@default", 10_000, 1, kind="notify"),
        schedule("sched"),
    ]


class TestRetention:
    KEPT = ["r", "r.1", "late", "late.1", "mixed", "mixed.1", "p", "stray"]
    GONE = ["o", "o.1", "o.1.1", "o.2", "o.2.1", "o.t", "lone"]

    def all_ids(self, store: Store) -> list[str]:
        return sorted(ids(store.search_promises(None, None, None, 1000, None)[0]))

    def test_dry_run_counts_and_deletes_nothing(self, store: Store) -> None:
        put(store, *retention_world())
        before = self.all_ids(store)
        with store.transaction():
            found, cursor = store.collect(200, None, 500, dry_run=True)
        assert (found.promises, found.tasks, found.callbacks, found.dry_run, cursor) == (7, 2, 1, True, None)
        assert self.all_ids(store) == before and store.get_task("__invoke:o") is not None

    def test_collect_deletes_finished_graphs_and_keeps_anything_pending(self, store: Store) -> None:
        put(store, *retention_world())
        with store.transaction():
            found, cursor = store.collect(200, None, 500)
        assert (found.promises, found.tasks, found.callbacks, found.before, cursor) == (7, 2, 1, 200, None)
        assert self.all_ids(store) == sorted(self.KEPT)
        assert [t.id for t in store.search_tasks(None, 100)] == ["__invoke:r"]
        assert store.get_callback("__resume:o:p") is None and store.get_callback("__notify:p:s") is not None
        assert store.get_schedule("sched") is not None
        with store.transaction():  # nothing more to find: the rest is pending, or too young
            assert store.collect(200, None, 500)[0].promises == 0

    def test_collect_goes_in_batches_oldest_first(self, store: Store) -> None:
        graphs = [[done(f"w{i}", 100 + i, {TAG_ROOT: f"w{i}"}), step(f"w{i}.1", f"w{i}", f"w{i}", 50)]
                  for i in range(30)]
        put(store, *[p for g in graphs for p in g], step("w5.2", "w5", "w5"))  # w5 waits on a step
        sizes, cursor, first = [], None, True
        while first or cursor is not None:
            first = False
            with store.transaction():
                found, cursor = store.collect(10_000, cursor, 10)
            sizes.append(found.promises)
        assert sum(sizes) == 58 and max(sizes) <= 10 + 2 and len(sizes) >= 5
        assert self.all_ids(store) == ["w5", "w5.1", "w5.2"]

    def test_reclaim_gives_the_free_pages_back(self, store: Store, backend: Backend) -> None:
        empty = store.size()
        big = Value({}, "x" * 4000)
        put(store, *[promise(f"b{i}", state=RESOLVED, completed_on=10, param=big) for i in range(2000)])
        full = store.size()
        with store.transaction():
            assert store.collect(100, None, 5000)[0].promises == 2000
        freed, more = store.reclaim(1_000_000)
        assert not more
        if backend.target == ":memory:" or is_postgres(backend):
            assert freed == 0  # memory has no file to give back; PostgreSQL's autovacuum keeps the space
            assert full > empty and store.size() > 0
            return
        assert freed > 7_000_000 and full > 8_000_000 and store.size() < empty * 1.2
