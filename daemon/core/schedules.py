"""Cron schedules: the cron arithmetic (pure) and the engine's schedule operations (a mixin of ``Engine``).

A schedule's tick creates the promise its template names (``{{.id}}`` is the schedule id,
``{{.timestamp}}`` the tick time in ms), with the schedule's param and tags plus ``resonate:schedule``
and ``resonate:invocation``, through the engine's own create path: a ``resonate:invoke`` tag in the
template makes it an invocation with its task, like any other. Cron times are in UTC.

After downtime a schedule fires once, for the latest tick it missed, not once per missed tick (a nightly
report that was down for a week runs once, not seven times); its next run is the next tick after now.
The scheduler learns of schedules through ``next_run_time`` (indexed), so nothing is scanned on a tick.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from croniter import CroniterError, croniter

from .. import errors
from ..protocol import CreateSchedule, DeleteSchedule, GetSchedule, ScheduleCreated, SearchSchedules
from ..protocol.records import (
    TAG_INVOCATION,
    TAG_SCHEDULE,
    Schedule,
    Value,
    after,
    decode_cursor,
    encode_cursor,
)
from ..protocol.results import (
    Page,
)
from .transitions import keys_match

if TYPE_CHECKING:
    from ..store import Store

log = logging.getLogger("resonate.schedules")
T = TypeVar("T")

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


class Schedules:
    """The schedule operations of ``Engine`` (which provides the attributes declared below)."""

    if TYPE_CHECKING:
        store: Store

        def _run(self, fn: Callable[[int], Any], *, durable: bool = True) -> Any: ...
        def _deadline(self, at: int) -> None: ...
        def _create(self, now: int, id: str, timeout: int, param: Value, tags: dict[str, str],
                    ikey: str | None, strict: bool, claim: tuple[str, int] | None = None) -> Any: ...

    def create_schedule(self, op: CreateSchedule) -> ScheduleCreated:
        """(201, new) or (200, the existing one with the same idempotency key)."""
        cron = check_cron(op.cron)

        def run(now: int) -> ScheduleCreated:
            # Errors are raised, rolling back: nothing was written before them.
            existing = self.store.get_schedule(op.id)
            if existing is not None:
                if keys_match(existing.idempotency_key, op.idempotency_key):
                    return ScheduleCreated(200, existing)
                raise errors.ScheduleAlreadyExists(f"schedule {op.id!r} already exists")
            s = Schedule(id=op.id, cron=cron, promise_id=op.promise_id, promise_timeout=op.promise_timeout,
                         next_run_time=next_after(cron, now), created_on=now, description=op.description,
                         tags=dict(op.tags), promise_param=op.promise_param, promise_tags=dict(op.promise_tags),
                         idempotency_key=op.idempotency_key)
            self.store.upsert_schedule(s)
            self._deadline(s.next_run_time)
            return ScheduleCreated(201, s)

        result: ScheduleCreated = self._run(run)
        return result

    def get_schedule(self, op: GetSchedule) -> Schedule:
        found = self.store.get_schedule(op.id)
        if found is None:
            raise errors.ScheduleNotFound(f"schedule {op.id!r} not found")
        return found

    def delete_schedule(self, op: DeleteSchedule) -> None:
        def run(now: int) -> None:
            if not self.store.delete_schedule(op.id):
                raise errors.ScheduleNotFound(f"schedule {op.id!r} not found")

        self._run(run)

    def search_schedules(self, op: SearchSchedules) -> Page[Schedule]:
        found = self.store.search_schedules(op.id, op.limit + 1, decode_cursor(op.cursor))
        if len(found) > op.limit:
            found = found[:op.limit]
            return Page(found, encode_cursor((found[-1].created_on, found[-1].id)))
        return Page(found, None)

    def _fire_due(self, now: int) -> int:
        """Inside the engine's tick transaction: create the promise of every schedule that fell due."""
        fired = 0
        for s in self.store.due_schedules(now, MAX_FIRED_PER_TICK):
            tick = max(s.next_run_time, latest_at_or_before(s.cron, now))
            pid = promise_id_for(s, tick)
            tags = {**s.promise_tags, TAG_SCHEDULE: s.id, TAG_INVOCATION: "true"}
            result = self._create(now, pid, after(tick, s.promise_timeout), s.promise_param, tags, pid, False)
            error = getattr(result, "error", None)
            if error is not None:  # e.g. the id exists with another key: the tick is skipped, not retried forever
                log.warning("schedule %s: cannot create %s: %s", s.id, pid, error)
            self.store.upsert_schedule(replace(s, last_run_time=tick, next_run_time=next_after(s.cron, now)))
            fired += 1
        return fired
