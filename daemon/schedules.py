"""Cron schedules: validation, create/get/delete/search, and firing the ones that fell due.

A schedule's tick creates the promise its template names (``{{.id}}`` is the schedule id,
``{{.timestamp}}`` the tick time in ms), with the schedule's param and tags plus ``resonate:schedule`` and
``resonate:invocation``, through the engine's own create path: a ``resonate:invoke`` tag in the template
makes it an invocation with its task, like any other. Cron times are in UTC.

After downtime a schedule fires once, for the latest tick it missed, not once per missed tick (a nightly
report that was down for a week runs once, not seven times); its next run is the next tick after now.
The scheduler learns of schedules through ``next_run_time`` (indexed), so nothing is scanned on a tick.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from croniter import CroniterError, croniter

from . import errors
from .records import TAG_INVOCATION, TAG_INVOKE, TAG_SCHEDULE, Schedule, Value, parse_address

if TYPE_CHECKING:
    from .engine import Engine

log = logging.getLogger("resonate.schedules")

MAX_FIRED_PER_TICK = 100  # the rest fire on the next pass, which comes at once (their time is past)


def check_cron(cron: Any) -> str:
    """The expression if croniter accepts it as a 5-field cron (or an @macro), else InvalidRequest."""
    if not isinstance(cron, str) or not cron.strip():
        raise errors.InvalidRequest("cron must be a non-empty string such as '0 2 * * *'")
    text = cron.strip()
    if not text.startswith("@") and len(text.split()) != 5:
        raise errors.InvalidRequest(
            f"invalid cron expression {cron!r}: expected 5 fields (minute hour day-of-month month day-of-week), "
            f"got {len(text.split())}; e.g. '0 2 * * *' is every day at 02:00 UTC")
    try:
        croniter(text, 0).get_next(float)
    except (CroniterError, ValueError, KeyError) as exc:
        raise errors.InvalidRequest(f"invalid cron expression {cron!r}: {exc}") from None
    return text


def next_after(cron: str, now_ms: int) -> int:
    """The first tick strictly after ``now_ms``."""
    return int(croniter(cron, now_ms / 1000.0).get_next(float) * 1000)


def latest_at_or_before(cron: str, now_ms: int) -> int:
    """The latest tick at or before ``now_ms`` (croniter's get_prev is strict, hence the millisecond)."""
    return int(croniter(cron, (now_ms + 1) / 1000.0).get_prev(float) * 1000)


def promise_id_for(s: Schedule, tick: int) -> str:
    return s.promise_id.replace("{{.id}}", s.id).replace("{{.timestamp}}", str(tick))


def create(engine: Engine, id: str, cron: str, promise_id: str, promise_timeout: int, promise_param: Value,
           promise_tags: dict[str, str], description: str, tags: dict[str, str],
           ikey: str | None) -> tuple[int, Schedule]:
    from .engine import _check_tags, _Fail, check_id

    check_id(id, "schedule id")
    cron = check_cron(cron)
    check_id(promise_id, "promise id template")
    if not isinstance(promise_timeout, int) or isinstance(promise_timeout, bool) or promise_timeout < 0:
        raise errors.InvalidRequest("promiseTimeout must be a non-negative integer (ms, relative)")
    _check_tags(promise_tags)
    _check_tags(tags)
    if promise_tags.get(TAG_INVOKE) is not None:
        try:
            parse_address(promise_tags[TAG_INVOKE])
        except ValueError as exc:
            raise errors.InvalidRequest(str(exc)) from None

    def op(now: int) -> tuple[int, Schedule] | _Fail:
        existing = engine.store.get_schedule(id)
        if existing is not None:
            if existing.idempotency_key == ikey:
                return 200, existing
            return _Fail(errors.ScheduleAlreadyExists(f"schedule {id!r} already exists"))
        s = Schedule(id=id, cron=cron, promise_id=promise_id, promise_timeout=promise_timeout,
                     next_run_time=next_after(cron, now), created_on=now, description=description or "",
                     tags=tags, promise_param=promise_param, promise_tags=promise_tags, idempotency_key=ikey)
        engine.store.upsert_schedule(s)
        engine._deadline(s.next_run_time)
        return 201, s

    return engine._run(op)


def get(engine: Engine, id: str) -> Schedule:
    from .engine import check_id

    check_id(id, "schedule id")
    found = engine.read(lambda: engine.store.get_schedule(id))
    if found is None:
        raise errors.ScheduleNotFound(f"schedule {id!r} not found")
    return found


def delete(engine: Engine, id: str) -> None:
    from .engine import _Fail, check_id

    check_id(id, "schedule id")

    def op(now: int) -> None | _Fail:
        if not engine.store.delete_schedule(id):
            return _Fail(errors.ScheduleNotFound(f"schedule {id!r} not found"))
        return None

    engine._run(op)


def search(engine: Engine, id_glob: str | None, limit: int,
           cursor: tuple[int, str] | None) -> tuple[list[Schedule], tuple[int, str] | None]:
    if not isinstance(limit, int) or not 1 <= limit <= 1000:
        raise errors.InvalidRequest("limit must be an integer from 1 to 1000")
    found = engine.read(lambda: engine.store.search_schedules(id_glob, limit + 1, cursor))
    if len(found) > limit:
        found = found[:limit]
        return found, (found[-1].created_on, found[-1].id)
    return found, None


def fire_due(engine: Engine, now: int) -> int:
    """Inside the engine's tick transaction: create the promise of every schedule that fell due."""
    fired = 0
    for s in engine.store.due_schedules(now, MAX_FIRED_PER_TICK):
        tick = max(s.next_run_time, latest_at_or_before(s.cron, now))
        pid = promise_id_for(s, tick)
        tags = {**s.promise_tags, TAG_SCHEDULE: s.id, TAG_INVOCATION: "true"}
        result = engine._create(now, pid, tick + s.promise_timeout, s.promise_param, tags, pid, False, None)
        error = getattr(result, "error", None)
        if error is not None:  # e.g. the id exists with another key: the tick is skipped, not retried forever
            log.warning("schedule %s: cannot create %s: %s", s.id, pid, error)
        engine.store.upsert_schedule(replace(s, last_run_time=tick, next_run_time=next_after(s.cron, now)))
        fired += 1
    return fired
