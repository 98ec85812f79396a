"""``resonate schedules ...``: invoke a function on a cron schedule (UTC), list, inspect and delete schedules."""

from __future__ import annotations

from typing import Any

import typer
from resonate_daemon.protocol.records import TAG_INVOKE, Schedule
from rich.table import Table

from resonate import codec
from resonate.render import short, when

from . import exits
from .output import View, err, fail, out, output
from .session import parse_duration, parse_tags, parse_value, using

app = typer.Typer(help="Cron schedules (UTC): each tick invokes a function durably.", no_args_is_help=True)


def _call(s: Schedule) -> str:
    """``report('eu', fmt='csv')`` from the schedule's invocation param, for people."""
    try:
        name, args, kwargs, _ = codec.decode_param(s.promise_param)
    except Exception:
        return "-"
    parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    return f"{name}({', '.join(parts)})"


def _target(text: str | None) -> str:
    if not text:
        return "poll://any@default"  # never the CLI's own group: no worker serves it
    return text if text.startswith("poll://") else f"poll://any@{text}"


@app.command()
@output()
def create(ctx: typer.Context, name: str = typer.Argument(..., help="The schedule's id; promises are NAME.<tick ms>."),
           cron: str = typer.Option(..., "--cron", help="Cron expression, 5 fields, UTC: '0 2 * * *'."),
           func: str = typer.Option(..., "--func", "-f", help="The registered function to invoke."),
           arg: list[str] = typer.Option(None, "--arg", help="A positional argument (JSON where it parses; repeatable)."),
           kwarg: list[str] = typer.Option(None, "--kwarg", "-k", help="A keyword argument k=v (repeatable)."),
           target: str = typer.Option(None, "--target", help="Where workers run it: a group or poll:// address (default: default)."),
           timeout: str = typer.Option(None, "--timeout", help="Each invocation's timeout after its tick (30s, 5m, 1d; default 1y).")
           ) -> View:
    """Invoke FUNC on a cron schedule, durably (the store keeps it; a daemon fires it).

    Example: resonate schedules create nightly --cron "0 2 * * *" --func report --arg eu
    """
    secs = parse_duration(timeout)
    kwargs: dict[str, Any] = {k: parse_value(v) for k, v in parse_tags(kwarg).items()}
    values = [parse_value(a) for a in (arg or [])]
    with using(ctx) as client:
        schedule = client.resonate.options(target=_target(target), timeout=secs).schedule(name, cron, func, *values,
                                                                                          **kwargs)
        if schedule.cron != cron.strip() or _call(schedule) != _call(client_param(func, values, kwargs)):
            fail(f"schedule {name!r} already exists with another cron or call ({schedule.cron!r}: "
                 f"{_call(schedule)}); delete it first", exits.CONFLICT, kind="ScheduleAlreadyExists")
        if not client.daemon:
            err.print("note: no daemon answers; the schedule is stored and fires once `resonate serve` runs "
                      "on this database", highlight=False)
    return View(schedule.to_json(), lambda: err.print(
        f"scheduled {name}: {_call(schedule)} at '{schedule.cron}' (UTC), next {when(schedule.next_run_time)}",
        highlight=False))


def client_param(func: str, values: list[Any], kwargs: dict[str, Any]) -> Schedule:
    return Schedule(id="", cron="", promise_id="", promise_timeout=0, next_run_time=0, created_on=0,
                    promise_param=codec.encode_param(func, values, kwargs, 0))


@app.command("list")
@output(lines=True)
def list_(ctx: typer.Context, id: str = typer.Option("*", "--id", help="Id glob (* matches anything)."),
          limit: int = typer.Option(50, "--limit", "-n", min=1, max=1000),
          cursor: str = typer.Option(None, "--cursor", help="Continue from a previous page's cursor.")) -> View:
    """List schedules, newest first.

    Example: resonate schedules list --json
    """
    with using(ctx, read=True) as client:
        found, nxt = client.resonate.schedules.search(id, limit=limit, cursor=cursor)
    return View({"schedules": [s.to_json() for s in found], "cursor": nxt}, lambda: _table(found, nxt),
                items=[s.to_json() for s in found])


def _table(found: list[Schedule], nxt: str | None) -> None:
    table = Table(box=None, header_style="bold")
    for col in ("ID", "CRON", "CALL", "TARGET", "NEXT RUN", "LAST RUN"):
        table.add_column(col, no_wrap=True)
    for s in found:
        table.add_row(s.id, s.cron, short(_call(s), 40), s.promise_tags.get(TAG_INVOKE, "-"),
                      when(s.next_run_time), when(s.last_run_time))
    out.print(table)
    if not found:
        err.print("no schedules")
    if nxt:
        err.print(f"more: --cursor {nxt}")


@app.command()
@output()
def get(ctx: typer.Context, id: str = typer.Argument(..., help="The schedule id.")) -> View:
    """Show one schedule.

    Example: resonate schedules get nightly
    """
    with using(ctx, read=True) as client:
        s = client.resonate.schedules.get(id)
    return View(s.to_json(), lambda: _detail(s))


def _detail(s: Schedule) -> None:
    table = Table(box=None, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for k, v in (("id", s.id), ("cron", f"{s.cron} (UTC)"), ("call", _call(s)),
                 ("target", s.promise_tags.get(TAG_INVOKE, "-")), ("promise id", s.promise_id),
                 ("promise timeout", f"{s.promise_timeout // 1000}s"), ("next run", when(s.next_run_time)),
                 ("last run", when(s.last_run_time)), ("created", when(s.created_on))):
        table.add_row(k, str(v))
    out.print(table)


@app.command()
@output()
def delete(ctx: typer.Context, id: str = typer.Argument(..., help="The schedule id.")) -> View:
    """Delete a schedule (promises it already created stay).

    Example: resonate schedules delete nightly
    """
    with using(ctx) as client:
        client.resonate.schedules.delete(id)
    return View({"id": id, "deleted": True}, lambda: err.print(f"deleted schedule {id}", highlight=False))
