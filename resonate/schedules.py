"""``resonate.schedules``: cron schedules kept by the store (low level), and what ``resonate.schedule`` builds.

Each tick of a schedule creates a promise from its id template (``{{.id}}``, ``{{.timestamp}}``: the tick
time in ms); a ``resonate:invoke`` tag in its promise tags makes that promise an invocation, which a worker
of the target runs. Cron times are in UTC; after downtime a schedule fires once for the period it missed.
"""

from __future__ import annotations

from typing import Any

from resonate_daemon.protocol import CreateSchedule, DeleteSchedule, GetSchedule, SearchSchedules
from resonate_daemon.protocol.records import Schedule, Value

from . import codec
from .transport import Transport

ONE_DAY_MS = 86_400_000


class Schedules:
    """Schedules by id. Example::

        resonate.schedules.create("nightly", "0 2 * * *", "nightly.{{.timestamp}}",
                                  tags={"resonate:invoke": "poll://any@workers"})
        resonate.schedules.search("night*")
        resonate.schedules.delete("nightly")
    """

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def create(self, id: str, cron: str, promise_id: str, *, timeout: int = ONE_DAY_MS,
               param: Value | None = None, data: Any = None, tags: dict[str, str] | None = None,
               description: str = "", schedule_tags: dict[str, str] | None = None,
               ikey: str | None = None) -> Schedule:
        """Create a schedule; ``timeout`` is each promise's timeout in ms after its tick.

        ``param`` is the promises' param as stored; or give ``data``, any value, encoded as JSON.
        Creating the same id again with the same ``ikey`` returns the existing schedule.
        """
        value = param if param is not None else codec.encode(data)
        return self._t.call(CreateSchedule(id, cron, promise_id, timeout, value, dict(tags or {}), description,
                                           dict(schedule_tags or {}), ikey)).schedule

    def get(self, id: str) -> Schedule:
        return self._t.call(GetSchedule(id))

    def delete(self, id: str) -> None:
        self._t.call(DeleteSchedule(id))

    def search(self, id: str = "*", *, limit: int = 100,
               cursor: str | None = None) -> tuple[list[Schedule], str | None]:
        """One page of schedules, newest first, and the cursor of the next page (None at the end)."""
        page = self._t.call(SearchSchedules(id, limit, cursor))
        return page.items, page.cursor
