"""Shared fixtures: one short temp directory and one SQLite file per test, a manual clock, an engine.

Directories come from ``tempfile.mkdtemp(dir="/tmp")`` (STYLE.md 14): pytest's own tmp_path is long
enough to break AF_UNIX socket paths, and every test gets its own database file.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest
from pg_cluster import Cluster, Unavailable
from resonate_daemon.clock import ManualClock
from resonate_daemon.core.engine import Engine
from resonate_daemon.protocol.records import Message
from resonate_daemon.store import open_store


@pytest.fixture
def short_dir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="rt-", dir="/tmp")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def db_path(short_dir: str) -> str:
    return os.path.join(short_dir, "r.db")


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """The session's PostgreSQL (see ``pg_cluster.py``); the tests that use it skip only where there are no
    server binaries (and no RESONATE_TEST_POSTGRES)."""
    cluster = Cluster()
    try:
        cluster.start()
    except Unavailable as exc:
        cluster.stop()
        pytest.skip(f"no PostgreSQL: {exc}")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: Cluster) -> str:
    """A fresh, empty schema of its own on the session's PostgreSQL, as a URL for ``open_store``."""
    return pg_cluster.fresh_url()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


class Sink:
    """Collects what the engine pushes after each commit (the in-process stand-in for a worker stream)."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    def __call__(self, messages: list[Message]) -> None:
        self.messages.extend(messages)

    def take(self) -> list[Message]:
        out, self.messages = self.messages, []
        return out


@pytest.fixture
def sink() -> Sink:
    return Sink()


@pytest.fixture
def engine(db_path: str, clock: ManualClock, sink: Sink) -> Iterator[Engine]:
    """An engine on a real SQLite file, with a manual clock and a collecting sink."""
    store = open_store(db_path)
    try:
        yield Engine(store, clock, sink=sink)
    finally:
        store.close()


@pytest.fixture(params=["sqlite", "postgres"])
def backend_engine(request: pytest.FixtureRequest, db_path: str, clock: ManualClock, sink: Sink) -> Iterator[Engine]:
    """``engine`` on each backend: a SQLite file, and a fresh schema of the session's PostgreSQL. A module
    runs its engine tests on both by defining ``engine`` as this."""
    target = request.getfixturevalue("pg_url") if request.param == "postgres" else db_path
    store = open_store(target)
    try:
        yield Engine(store, clock, sink=sink)
    finally:
        store.close()
