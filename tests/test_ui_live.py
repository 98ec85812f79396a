"""The UI's live parts and its waiting page's pages.

- ``live.ChangeStream`` in this process, on a fake change source: a burst of 1,000 changes is one event;
  a stream whose session ended says so and closes; the engine's ``RootWatch`` wakes for workflows only.
- On a real daemon: the workflows list's stream says when a workflow starts or ends, and the list's part
  (what the page fetches then) keeps the page's filters.
- ``pages.waiting`` on a fake store: full pages of the promises waiting for a person among many other
  pending promises, across the batches it reads, with no promise skipped or shown twice; then over HTTP.

Every wait is bounded (``asyncio.wait_for``, socket timeouts); nothing sleeps.
"""

from __future__ import annotations

import asyncio
import re
import socket
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from daemon_proc import FAR, Daemon, Stream, b64
from resonate_daemon.core.watch import RootWatch
from resonate_daemon.protocol.records import (
    EMPTY,
    PENDING,
    TAG_INVOKE,
    TAG_PARENT,
    TAG_ROOT,
    TAG_TIMEOUT,
    decode_cursor,
    encode_cursor,
)
from resonate_daemon.protocol.records import Promise as Record
from resonate_daemon.protocol.results import Page

from resonate_ui import pages
from resonate_ui.live import ChangeStream

# -- ChangeStream, in this process ---------------------------------------------------------------------


class Source:
    """A change source the test fires by hand (the engine's watch, in the daemon)."""

    def __init__(self) -> None:
        self.wakes: list[Callable[[], None]] = []
        self.subscribed = asyncio.Event()

    def __call__(self, wake: Callable[[], None]) -> Callable[[], None]:
        self.wakes.append(wake)
        self.subscribed.set()
        return lambda: self.wakes.remove(wake)

    def fire(self, times: int = 1) -> None:
        for _ in range(times):
            for wake in list(self.wakes):
                wake()


class Browser:
    """The ASGI side of one EventSource: what it was sent, and a way to leave."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.got = asyncio.Event()
        self.gone = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            self.bodies.append(message.get("body", b""))
            self.got.set()

    def events(self) -> list[str]:
        return [m.decode() for m in re.findall(rb'"type": "(\w+)"', b"".join(self.bodies))]

    async def until(self, kind: str, count: int = 1) -> None:
        """Until ``count`` events of ``kind`` came (each wait bounded)."""
        while self.events().count(kind) < count:
            self.got.clear()
            await asyncio.wait_for(self.got.wait(), 5)


def test_a_burst_of_a_thousand_changes_is_one_event() -> None:
    async def run() -> tuple[list[str], int]:
        source, browser = Source(), Browser()
        stream = ChangeStream(source, every_s=0, ping_s=60, alive=lambda: True)
        task = asyncio.create_task(stream({"type": "http"}, browser.receive, browser.send))
        await asyncio.wait_for(source.subscribed.wait(), 5)
        source.fire(1000)  # 1,000 commits before the loop gets a turn: one wake reaches it
        await browser.until("changed")
        source.fire()  # after the event: a new change is a new event
        await browser.until("changed", 2)
        browser.gone.set()
        await asyncio.wait_for(task, 5)
        return browser.events(), len(source.wakes)

    events, still_subscribed = asyncio.run(run())
    assert events == ["changed", "changed"]
    assert still_subscribed == 0  # the browser left: the watch is gone from the engine


def test_a_stream_whose_session_ended_says_so_and_closes() -> None:
    async def run() -> list[str]:
        source, browser, open_ = Source(), Browser(), [True]
        stream = ChangeStream(source, every_s=0, ping_s=60, alive=lambda: open_[0])
        task = asyncio.create_task(stream({"type": "http"}, browser.receive, browser.send))
        await asyncio.wait_for(source.subscribed.wait(), 5)
        open_[0] = False  # logged out, or expired
        source.fire()
        await asyncio.wait_for(task, 5)  # it ends by itself: the browser never left
        return browser.events()

    assert asyncio.run(run()) == ["ended"]


def test_the_root_watch_wakes_for_workflows_not_for_their_steps() -> None:
    woken: list[int] = []
    watch = RootWatch(lambda: woken.append(1))
    watch.offer([("wf-1", "wf-1.1", False), ("wf-1", "wf-1", False)])  # a step; the root's task
    assert woken == []
    watch.offer([("wf-1", "wf-1.2", True)])  # an rpc under wf-1: a step too
    assert woken == []
    watch.offer([("wf-1", "wf-1.1", False), ("wf-2", "wf-2", True)])  # wf-2 written: one wake per commit
    assert woken == [1]


# -- the live list on a daemon --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    d = Daemon("--retention", "off", dir=tempfile.mkdtemp(dir="/tmp", prefix="rul-"))
    d.command = ["-m", "resonate_cli", "serve"]
    d.start(timeout=60)
    yield d
    d.stop()
    d.cleanup()


def workflow(c: httpx.Client, id: str) -> None:
    """A workflow nobody runs yet (no worker): a root promise with an invoke target."""
    r = c.post("/promises", json={"id": id, "timeout": FAR, "param": {"data": b64('{"func": "f", "args": []}')},
                                  "tags": {TAG_INVOKE: "poll://any@nobody", TAG_ROOT: id}})
    assert r.status_code == 201, r.text


def rows(html: str) -> list[str]:
    return re.findall(r'<tr data-id="([^"]+)"', html)


def test_the_list_hears_workflows_start_and_end_and_its_part_keeps_the_filters(daemon: Daemon) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(daemon.socket)
    stream = Stream(sock, "/ui/list/events")
    try:
        assert stream.status == 200
        stream.next_comment()  # subscribed
        with daemon.client() as c:
            workflow(c, "live-1")
            assert stream.next() == {"type": "changed"}
            assert c.patch("/promises/live-1", json={"state": "RESOLVED"}).status_code == 201
            assert stream.next() == {"type": "changed"}  # after the 1 s coalescing pause: the end is heard
            workflow(c, "live-2")
            assert stream.next() == {"type": "changed"}
            part = c.get("/ui/list", params={"state": "pending"})
            assert part.status_code == 200 and "<nav>" not in part.text  # the part, not a page
            assert rows(part.text) == ["live-2"]
            assert rows(c.get("/ui/list", params={"state": "resolved"}).text) == ["live-1"]
            assert rows(c.get("/ui/list", params={"q": "live-"}).text) == ["live-2", "live-1"]
            page = c.get("/ui/", params={"state": "pending"}).text
            assert 'data-events="/ui/list/events"' in page and 'data-part="/ui/list?state=pending"' in page
    finally:
        stream.close()


# -- the waiting page's pages --------------------------------------------------------------------------

def promise(n: int, human: bool) -> Record:
    tags = {TAG_ROOT: "wf", TAG_PARENT: "wf"} if human else {TAG_ROOT: "wf", TAG_PARENT: "wf", TAG_TIMEOUT: "true"}
    return Record(f"p-{n:05d}", PENDING, EMPTY, EMPTY, FAR, tags, 1_000 + n)


def store(promises: list[Record]) -> Callable[[str | None, int], Any]:
    """Newest first, by (created_on, id), as the store's keyset search."""
    ordered = sorted(promises, key=lambda p: (p.created_on, p.id), reverse=True)
    reads: list[int] = []

    async def search(cursor: str | None, limit: int) -> Page[Record]:
        after = decode_cursor(cursor)
        left = [p for p in ordered if after is None or (p.created_on, p.id) < after]
        reads.append(limit)
        page = left[:limit]
        more = len(left) > limit
        return Page(page, encode_cursor((page[-1].created_on, page[-1].id)) if more else None)

    search.reads = reads  # type: ignore[attr-defined]
    return search


def all_pages(search: Callable[[str | None, int], Any]) -> list[list[str]]:
    async def run() -> list[list[str]]:
        out, cursor = [], None
        while True:
            cards, cursor = await pages.waiting(search, cursor)
            out.append([c["p"].id for c in cards])
            if cursor is None:
                return out

    return asyncio.run(run())


def test_the_waiting_page_is_full_when_more_wait_and_skips_nothing() -> None:
    # 45 promises waiting for a person among 1,300 sleeping steps: the people's are spread across batches
    humans = {n for n in range(0, 1345, 30)}
    promises = [promise(n, n in humans) for n in range(1345)]
    got = all_pages(store(promises))
    assert [len(p) for p in got] == [20, 20, 5]
    assert [i for page in got for i in page] == [f"p-{n:05d}" for n in sorted(humans, reverse=True)]
    assert all_pages(store([promise(n, False) for n in range(10)])) == [[]]
    assert all_pages(store([promise(n, True) for n in range(20)])) == [[f"p-{n:05d}" for n in range(19, -1, -1)]]


def test_a_page_stops_reading_after_its_scan_limit_and_the_next_reads_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pages, "WAIT_SCAN", 1000)
    promises = [promise(n, n in (0, 1)) for n in range(2500)]  # two people's promises, the oldest
    search = store(promises)
    got = all_pages(search)
    assert got == [[], [], ["p-00001", "p-00000"]]  # short pages, then the two: none lost
    assert max(search.reads) == pages.WAIT_BATCH  # type: ignore[attr-defined]


def test_the_waiting_page_pages_over_http(daemon: Daemon) -> None:
    with daemon.client() as c:
        for n in range(25):
            r = c.post("/promises", json={"id": f"ask-{n:02d}", "timeout": FAR, "tags": {TAG_ROOT: "wf-x"}})
            assert r.status_code == 201
            r = c.post("/promises", json={"id": f"nap-{n:02d}", "timeout": FAR, "tags": {TAG_TIMEOUT: "true"}})
            assert r.status_code == 201
        page = c.get("/ui/waiting").text
        first = re.findall(r'<section class="card[^"]*" data-id="([^"]+)"', page)
        assert first == [f"ask-{n:02d}" for n in range(24, 4, -1)]
        nxt = re.search(r'href="(/ui/waiting\?cursor=[^"]+)" rel="next"', page)
        assert nxt
        second = c.get(nxt.group(1).replace("&amp;", "&")).text
        assert re.findall(r'<section class="card[^"]*" data-id="([^"]+)"', second) == [f"ask-{n:02d}" for n in range(4, -1, -1)]
        assert 'rel="next"' not in second and "first page" in second
