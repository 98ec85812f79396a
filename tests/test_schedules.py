"""Cron schedules: firing times with a manual clock, one catch-up after a gap, a restart on the same file,
the HTTP API's shapes and codes, the SDK in local mode, and the scheduler's query plans (no full scans).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from resonate_daemon import errors
from resonate_daemon.clock import ManualClock
from resonate_daemon.core.engine import Engine
from resonate_daemon.protocol import CreateSchedule, DeleteSchedule, GetPromise, GetSchedule, SearchPromises
from resonate_daemon.store import open_store

from resonate import Context, Resonate
from tests.conftest import Sink
from tests.daemon_proc import Daemon

T0 = int(datetime(2024, 1, 1, 0, 0, 30, tzinfo=UTC).timestamp() * 1000)
MIN = 60_000


def fired(engine: Engine, schedule: str) -> list[str]:
    found = engine.search_promises(SearchPromises(f"{schedule}.*", tags={"resonate:schedule": schedule}, limit=1000))
    return sorted(p.id for p in found.items)


def test_fires_at_the_right_times(engine: Engine, clock: ManualClock, sink: Sink) -> None:
    clock.set(T0)
    created = engine.create_schedule(CreateSchedule("every5", "*/5 * * * *", "every5.{{.timestamp}}", 60_000,
                                                    promise_tags={"resonate:invoke": "poll://any@reports"}))
    s = created.schedule
    assert created.status == 201 and s.next_run_time == T0 - 30_000 + 5 * MIN
    assert engine.tick() == s.next_run_time  # the schedule is the scheduler's next deadline
    clock.set(s.next_run_time - 1)
    engine.tick()
    assert fired(engine, "every5") == []
    clock.set(s.next_run_time)
    assert engine.tick() == s.next_run_time + 60_000  # now the new promise's timeout comes first
    tick = s.next_run_time
    promise = engine.get_promise(GetPromise(f"every5.{tick}"))
    assert promise.timeout == tick + 60_000
    assert promise.tags == {"resonate:invoke": "poll://any@reports", "resonate:schedule": "every5",
                            "resonate:invocation": "true"}
    assert [m.type for m in sink.take()] == ["invoke"]  # created through the engine: an invocation
    clock.set(tick + 5 * MIN)
    engine.tick()
    assert fired(engine, "every5") == [f"every5.{tick}", f"every5.{tick + 5 * MIN}"]
    again = engine.get_schedule(GetSchedule("every5"))
    assert again.last_run_time == tick + 5 * MIN and again.next_run_time == tick + 10 * MIN


def test_catches_up_once_after_a_gap(engine: Engine, clock: ManualClock) -> None:
    clock.set(T0)
    engine.create_schedule(CreateSchedule("minutely", "* * * * *", "m.{{.id}}.{{.timestamp}}", 10 * MIN))
    clock.set(T0 + 3 * 60 * MIN + 15_000)  # three hours down: 180 ticks missed
    engine.tick()
    latest = T0 - 30_000 + 180 * MIN
    assert fired(engine, "minutely") == [] and len(engine.search_promises(SearchPromises("m.*")).items) == 1
    assert engine.get_promise(GetPromise(f"m.minutely.{latest}")).pending
    assert engine.get_schedule(GetSchedule("minutely")).next_run_time == latest + MIN


def test_a_new_engine_on_the_same_file_continues_the_schedule(db_path: str, clock: ManualClock) -> None:
    clock.set(T0)
    store = open_store(db_path)
    engine = Engine(store, clock)
    engine.create_schedule(CreateSchedule("hourly", "0 * * * *", "h.{{.timestamp}}", MIN))
    first = engine.get_schedule(GetSchedule("hourly")).next_run_time
    clock.set(first)
    engine.tick()
    store.close()

    clock.set(first + 5 * 60 * MIN + 1)  # down for five hours
    store = open_store(db_path)
    try:
        engine = Engine(store, clock)
        engine.tick()
        found = sorted(p.id for p in engine.search_promises(SearchPromises("h.*")).items)
        assert found == [f"h.{first}", f"h.{first + 5 * 60 * MIN}"]
        assert engine.get_schedule(GetSchedule("hourly")).next_run_time == first + 6 * 60 * MIN
    finally:
        store.close()


def test_validation(engine: Engine) -> None:
    with pytest.raises(errors.InvalidRequest, match="invalid cron expression 'every day'"):
        engine.create_schedule(CreateSchedule("bad", "every day", "bad.{{.timestamp}}", MIN))
    with pytest.raises(errors.InvalidRequest, match="out of range"):
        engine.create_schedule(CreateSchedule("bad", "61 * * * *", "bad.{{.timestamp}}", MIN))
    with pytest.raises(errors.InvalidRequest, match="schedule id"):
        engine.create_schedule(CreateSchedule("", "* * * * *", "x", MIN))
    with pytest.raises(errors.InvalidRequest, match="promiseTimeout"):
        engine.create_schedule(CreateSchedule("neg", "* * * * *", "x", -1))
    engine.create_schedule(CreateSchedule("dup", "* * * * *", "dup.{{.timestamp}}", MIN, idempotency_key="k"))
    again = engine.create_schedule(CreateSchedule("dup", "* * * * *", "dup.{{.timestamp}}", MIN, idempotency_key="k"))
    assert again.status == 200
    with pytest.raises(errors.ScheduleAlreadyExists):
        engine.create_schedule(CreateSchedule("dup", "* * * * *", "dup.{{.timestamp}}", MIN, idempotency_key="other"))
    with pytest.raises(errors.ScheduleNotFound):
        engine.delete_schedule(DeleteSchedule("nope"))


def test_http_api_shapes_and_codes() -> None:
    daemon = Daemon().start()
    try:
        with daemon.client() as c:
            body = {"id": "nightly", "description": "report", "cron": "0 2 * * *", "tags": {},
                    "promiseId": "nightly.{{.timestamp}}", "promiseTimeout": 3_600_000,
                    "promiseParam": {"headers": {}, "data": None}, "promiseTags": {"resonate:invoke": "default"}}
            r = c.post("/schedules", json=body, headers={"idempotency-key": "k"})
            assert r.status_code == 201, r.text
            s = r.json()
            assert s["id"] == "nightly" and s["cron"] == "0 2 * * *" and s["nextRunTime"] > s["createdOn"]
            assert c.post("/schedules", json=body, headers={"idempotency-key": "k"}).status_code == 200
            r = c.post("/schedules", json=body)
            assert r.status_code == 409 and r.json()["error"]["code"] == 40901
            r = c.post("/schedules", json={**body, "id": "bad", "cron": "0 25 * * *"})
            assert r.status_code == 400 and r.json()["error"]["code"] == 40000
            assert "invalid cron expression '0 25 * * *'" in r.json()["error"]["message"]
            assert c.get("/schedules/nightly").json()["promiseId"] == "nightly.{{.timestamp}}"
            c.post("/schedules", json={**body, "id": "other"})
            page = c.get("/schedules", params={"id": "night*"}).json()
            assert [x["id"] for x in page["schedules"]] == ["nightly"] and page["cursor"] is None
            first = c.get("/schedules", params={"limit": 1}).json()
            second = c.get("/schedules", params={"limit": 1, "cursor": first["cursor"]}).json()
            assert {first["schedules"][0]["id"], second["schedules"][0]["id"]} == {"nightly", "other"}
            assert c.delete("/schedules/nightly").status_code == 204
            r = c.get("/schedules/nightly")
            assert r.status_code == 404 and r.json()["error"]["code"] == 40401
            assert c.delete("/schedules/nightly").status_code == 404
    finally:
        daemon.stop()
        daemon.cleanup()


def test_resonate_schedule_runs_the_function_in_local_mode() -> None:
    clock = ManualClock(T0)
    r = Resonate.local(clock=clock)
    ran: list[tuple[str, str]] = []
    done = threading.Event()
    try:
        @r.register
        def report(ctx: Context, region: str, fmt: str = "pdf") -> str:
            ran.append((region, fmt))
            done.set()
            return f"{region}.{fmt}"

        s = r.schedule("nightly-report", "0 2 * * *", report, "eu", fmt="csv")
        assert s.promise_id == "nightly-report.{{.timestamp}}"
        assert s.promise_tags["resonate:invoke"] == "poll://any@default"
        assert r.schedule("nightly-report", "0 2 * * *", report, "eu", fmt="csv") == s  # idempotent by name
        assert [x.id for x in r.schedules.search("nightly*")[0]] == ["nightly-report"]
        r.start()
        clock.set(s.next_run_time)
        r._transport.tick()  # type: ignore[attr-defined]  # LocalTransport: apply what fell due, now
        assert done.wait(20)
        handle = r.get(f"nightly-report.{s.next_run_time}")
        assert handle.result(timeout=20) == "eu.csv" and ran == [("eu", "csv")]
        r.schedules.delete("nightly-report")
        with pytest.raises(errors.ScheduleNotFound):
            r.schedules.get("nightly-report")
    finally:
        r.stop()


def test_the_scheduler_queries_use_indexes(engine: Engine) -> None:
    """Every query the scheduler runs on a tick is an index search, never a scan of a whole table."""
    from resonate_daemon.store.sqlite import PromiseRow, ScheduleRow, TaskRow

    store: Any = engine.store
    import peewee as pw

    queries: list[Any] = [
        PromiseRow.select().where((PromiseRow.state == "PENDING") & (PromiseRow.timeout <= 1))
        .order_by(PromiseRow.timeout).limit(500),
        PromiseRow.select(PromiseRow.timeout).where(PromiseRow.state == "PENDING").order_by(PromiseRow.timeout)
        .limit(1),
        TaskRow.select().where(TaskRow.state.in_(["CLAIMED", "ENQUEUED"]) & (TaskRow.expires_at <= 1))
        .order_by(TaskRow.expires_at).limit(500),
        TaskRow.select(pw.fn.MIN(TaskRow.expires_at)).where(TaskRow.state.in_(["CLAIMED", "ENQUEUED"])),
        ScheduleRow.select().where(ScheduleRow.next_run_time <= 1).order_by(ScheduleRow.next_run_time).limit(100),
        ScheduleRow.select(pw.fn.MIN(ScheduleRow.next_run_time)),
    ]
    for q in queries:
        sql, params = q.sql()
        plan = " | ".join(r[-1] for r in store.db.execute_sql("EXPLAIN QUERY PLAN " + sql, params).fetchall())
        assert "USING" in plan and not any(step.startswith("SCAN") and "USING" not in step
                                           for step in plan.split(" | ")), (sql, plan)
