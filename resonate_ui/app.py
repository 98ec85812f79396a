"""The UI's routes: workflows, one workflow (live), waiting for a person, workers, schedules, status, actions.

Every read is one SDK call over ``web.EngineTransport`` (the same ops as ``resonate workflows list``,
``steps``/``tree``, ``workers``, ``schedules list`` and ``status``); a workflow's history is the CLI's
``history.steps_of``. Live updates reuse the daemon's ``WatchStream`` (the engine's watch on the call
graph, ``GET /v1/promises/{id}/watch``): each ``changed`` event makes the page fetch its live part again.
"""

from __future__ import annotations

import os
import time
from typing import Any
from urllib.parse import urlencode

import jinja2
from resonate_daemon.errors import PromiseNotFound, ResonateError
from resonate_daemon.protocol import ForkWorkflow, RetryWorkflow, SearchPromises, SearchTasks
from resonate_daemon.protocol.records import TAG_INVOKE, TAG_PARENT, TAG_ROOT, Promise
from resonate_daemon.protocol.workflow_ops import WORKFLOW_STATES
from resonate_daemon.server.api import AppState, daemon_status, search_off_loop
from resonate_daemon.server.dispatch import WatchStream
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from resonate.promises import Promises, Workflows
from resonate.schedules import Schedules
from resonate_cli.history import Step, steps_of
from resonate_cli.render import duration, error_of, is_human_wait, when

from .web import COOKIE, EngineTransport, Guard, check_json, invocation, read_form, safe_back, value_text

HERE = os.path.dirname(os.path.abspath(__file__))
PAGE = 50  # workflows a page
TREE_LIMIT = 5000  # promises of one call graph shown (as resonate tree)
SINCE = {"1h": 3_600_000, "24h": 86_400_000, "7d": 604_800_000, "30d": 2_592_000_000}
ACTIONS = ("resolve", "reject", "cancel", "retry", "fork")

_env = jinja2.Environment(loader=jinja2.FileSystemLoader(os.path.join(HERE, "templates")),
                          autoescape=True, undefined=jinja2.StrictUndefined)
_env.filters.update(when=when, duration=duration)


class Ui:
    """The pages of one listener (the engine, dispatcher and config are the daemon's, shared)."""

    def __init__(self, state: AppState, token: str | None) -> None:
        self.state = state
        self.engine = state.engine
        transport = EngineTransport(state.engine)
        self.transport = transport
        self.promises = Promises(transport)
        self.workflows = Workflows(transport)
        self.schedules = Schedules(transport)
        self.guard = Guard(token, state.config.ui_read_only)
        self.started_ms = int(time.monotonic() * 1000)

    def render(self, request: Request, name: str, code: int = 200, **context: Any) -> HTMLResponse:
        html = _env.get_template(name).render(
            csrf=self.guard.csrf, read_only=self.guard.read_only, now=self.engine.clock.now(),
            msg=request.query_params.get("msg", ""), error=request.query_params.get("error", ""),
            path=request.url.path, **context)
        return HTMLResponse(html, status_code=code, headers={"cache-control": "no-store"})

    # -- pages --------------------------------------------------------------------------------------
    async def workflows_page(self, request: Request) -> Response:
        q = request.query_params
        state, func, since = q.get("state") or None, q.get("func") or None, q.get("since") or None
        search = (q.get("q") or "").strip()
        if state is not None and state not in WORKFLOW_STATES:
            state = None
        if search:
            return await self._search(request, search)
        start = self.engine.clock.now() - SINCE[since] if since in SINCE else None
        items, cursor, total = self.workflows.search(state=state, func=func, since=start, limit=PAGE,
                                                     cursor=q.get("cursor") or None)
        keep = {k: v for k, v in (("state", state), ("func", func), ("since", since)) if v}
        more = f"?{urlencode({**keep, 'cursor': cursor})}" if cursor else None
        return self.render(request, "workflows.html", rows=[self._row(p) for p in items], total=total, more=more,
                           first=f"?{urlencode(keep)}" if q.get("cursor") else None, state=state or "",
                           func=func or "", since=since or "", search="", states=list(WORKFLOW_STATES),
                           spans=list(SINCE), functions=self._functions())

    async def _search(self, request: Request, search: str) -> Response:
        """By id: an exact id opens it; otherwise the workflows whose id contains the text (off the loop)."""
        try:
            found = self.promises.get(search)
            return RedirectResponse(f"/ui/workflow?{urlencode({'id': found.id})}", status_code=303)
        except PromiseNotFound:
            pass
        pattern = "*" + "".join(f"[{c}]" if c in "*?[]" else c for c in search) + "*"
        op = SearchPromises(pattern, None, {}, 500, None)
        if self.state.reader is not None:
            page = await search_off_loop(self.engine, self.state.batch, self.state.reader, op)
        else:
            page = self.transport.call(op)
        roots = [p for p in page.items if TAG_INVOKE in p.tags and TAG_PARENT not in p.tags][:PAGE]
        return self.render(request, "workflows.html", rows=[self._row(p) for p in roots], total=len(roots),
                           more=None, first="?", state="", func="", since="", search=search,
                           states=list(WORKFLOW_STATES), spans=list(SINCE), functions=self._functions())

    def _row(self, p: Promise) -> dict[str, Any]:
        func, _ = invocation(p)
        end = p.completed_on if p.completed_on is not None else self.engine.clock.now()
        return {"id": p.id, "func": func, "state": p.state, "started": p.created_on,
                "took": max(0, end - p.created_on), "error": error_of(p)}

    def _functions(self) -> list[str]:
        names = {f for procs in self.state.dispatcher.functions().values() for fs in procs.values() if fs for f in fs}
        return sorted(names)

    async def workflow_page(self, request: Request) -> Response:
        context = self._workflow(request.query_params.get("id", ""))
        if context is None:
            return self.render(request, "message.html", 404, title="Not found",
                               text=f"No promise {request.query_params.get('id', '')!r}.")
        return self.render(request, "workflow.html", **context)

    async def workflow_part(self, request: Request) -> Response:
        context = self._workflow(request.query_params.get("id", ""))
        if context is None:
            return HTMLResponse("<p>gone</p>", status_code=404)
        return self.render(request, "part.html", **context)

    def _workflow(self, id: str) -> dict[str, Any] | None:
        try:
            tree = self.promises.tree(id, limit=TREE_LIMIT)
        except PromiseNotFound:
            return None
        steps = steps_of(tree)
        root = steps[0].promise
        func, args = invocation(root) if TAG_INVOKE in root.tags else (steps[0].func, "")
        start = min((s.started for s in steps if s.started), default=root.created_on)
        end = max([s.ended or self.engine.clock.now() for s in steps] + [start + 1])
        return {"root": root, "func": func, "args": args, "result": value_text(root.value) if root.state == "RESOLVED" else "",
                "error_info": error_of(root), "steps": [self._step(s, start, end) for s in steps],
                "truncated": tree.truncated, "workflow_root": root.tags.get(TAG_ROOT, root.id),
                "is_workflow": TAG_INVOKE in root.tags and TAG_PARENT not in root.tags}

    def _step(self, s: Step, start: int, end: int) -> dict[str, Any]:
        span = max(1, end - start)
        began = s.started or s.promise.created_on
        stop = s.ended if s.ended is not None else self.engine.clock.now()
        return {"s": s, "p": s.promise, "value": "" if s.promise.pending or s.error else value_text(s.promise.value),
                "left": round(100 * (began - start) / span, 2), "width": max(0.5, round(100 * (stop - began) / span, 2)),
                "human": is_human_wait(s.promise)}

    async def events(self, request: Request) -> Response | ASGIApp:
        id = request.query_params.get("id", "")
        try:
            self.promises.get(id)
        except PromiseNotFound:
            return Response("no such promise", status_code=404)
        return WatchStream(self.engine, id, self.state.dispatcher.ping_interval_s)

    async def waiting_page(self, request: Request) -> Response:
        """Pending promises nobody's code will complete (``ctx.promise()``): a page of pending ones, filtered."""
        found, cursor = self.promises.search(state="pending", limit=500, cursor=request.query_params.get("cursor"))
        rows = [{"p": p, "question": value_text(p.param), "root": p.tags.get(TAG_ROOT, "")}
                for p in found if is_human_wait(p)]
        return self.render(request, "waiting.html", rows=rows, more=f"?{urlencode({'cursor': cursor})}" if cursor else None,
                           focus=request.query_params.get("id", ""), data=request.query_params.get("data", ""))

    async def workers_page(self, request: Request) -> Response:
        status = daemon_status(self.engine, self.state.dispatcher, self.state.config)
        held: dict[str, list[str]] = {}
        for t in self.transport.call(SearchTasks(("CLAIMED",), 1000)):
            held.setdefault(t.process_id or "", []).append(t.root_promise_id)
        return self.render(request, "workers.html", functions=status.functions, held=held, waiting=status.waiting)

    async def schedules_page(self, request: Request) -> Response:
        items, cursor = self.schedules.search(limit=100, cursor=request.query_params.get("cursor"))
        return self.render(request, "schedules.html", schedules=items,
                           more=f"?{urlencode({'cursor': cursor})}" if cursor else None)

    async def status_page(self, request: Request) -> Response:
        cfg = self.state.config
        status = daemon_status(self.engine, self.state.dispatcher, cfg)
        size = sum(os.path.getsize(f) for f in (cfg.db, cfg.db + "-wal") if os.path.exists(f))
        return self.render(request, "status.html", status=status, size=size, retention=cfg.retention_ms,
                           durability=cfg.durability, uptime=int(time.monotonic() * 1000) - self.started_ms)

    # -- auth and actions ---------------------------------------------------------------------------
    async def login(self, request: Request) -> Response:
        if self.guard.token is None:
            return RedirectResponse("/ui/", status_code=303)
        if not self.guard.login(request.query_params.get("token", "")):
            return self.render(request, "message.html", 401, title="Token needed",
                               text="Open the address `resonate ui` prints: /ui/login?token=... with this daemon's token.")
        response = RedirectResponse("/ui/", status_code=303)
        response.set_cookie(COOKIE, self.guard.session, httponly=True, samesite="strict", path="/ui")
        return response

    async def act(self, request: Request) -> Response:
        form = await read_form(request, self.state.config.max_body)
        field = {k: form.get(k, "") for k in ("action", "id", "data", "from_step", "new_id", "csrf", "back")}
        refused = self.guard.may_act(request, field["csrf"])
        if refused is not None:
            return self.render(request, "message.html", 403, title="Refused", text=refused)
        back, action, id = safe_back(field["back"]), field["action"], field["id"]
        try:
            msg = self._do(action, id, field)
        except (ResonateError, ValueError) as exc:
            extra = {"data": field["data"]} if action in ("resolve", "reject") else {}
            return RedirectResponse(_with(back, error=f"{action} {id}: {exc}", **extra), status_code=303)
        return RedirectResponse(_with(back, msg=msg), status_code=303)

    def _do(self, action: str, id: str, field: dict[str, str]) -> str:
        if action in ("resolve", "reject"):
            problem = check_json(field["data"])
            if problem is not None:
                raise ValueError(f"the data is {problem}")
            data = field["data"].strip() or None
            done = (self.promises.resolve if action == "resolve" else self.promises.reject)(id, data=data)
            return f"{id} is {done.state}"
        if action == "cancel":
            promise, below = self.promises.cancel_tree(id)
            return f"{id} is {promise.state}; canceled {len(below)} pending below it"
        if action == "retry":
            self.transport.call(RetryWorkflow(id))
            return f"{id} runs again"
        if action == "fork":
            try:
                step = int(field["from_step"] or "0")
            except ValueError:
                raise ValueError(f"from step must be a number, not {field['from_step']!r}") from None
            fork = self.transport.call(ForkWorkflow(id, step, field["new_id"].strip() or None))
            return f"forked {id} as {fork.id}"
        raise ValueError(f"unknown action {action!r}; one of {', '.join(ACTIONS)}")


def _with(back: str, **params: str) -> str:
    sep = "&" if "?" in back else "?"
    return back + sep + urlencode(params)


def create_ui(state: AppState, token: str | None) -> ASGIApp:
    """The UI app for one listener (``token``: required from browsers on TCP; None on the Unix socket)."""
    ui = Ui(state, token)

    def static(name: str, media: str) -> Any:
        async def serve(request: Request) -> Response:
            return FileResponse(os.path.join(HERE, "static", name), media_type=media)
        return serve

    open_routes = {"/login", "/static/ui.js", "/static/ui.css"}
    routes = [Route("/", ui.workflows_page), Route("/workflow", ui.workflow_page),
              Route("/workflow/part", ui.workflow_part), Route("/workflow/events", ui.events),
              Route("/waiting", ui.waiting_page), Route("/workers", ui.workers_page),
              Route("/schedules", ui.schedules_page), Route("/status", ui.status_page),
              Route("/login", ui.login), Route("/act", ui.act, methods=["POST"]),
              Route("/static/ui.js", static("ui.js", "text/javascript")),
              Route("/static/ui.css", static("ui.css", "text/css"))]
    app = Starlette(routes=routes)

    async def guarded(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and str(scope.get("path", ""))[len(scope.get("root_path", "")):] not in open_routes:
            request = Request(scope)
            if not ui.guard.allowed(request):
                response = ui.render(request, "message.html", 401, title="Token needed",
                                     text="Open the address `resonate ui` prints (it logs this browser in).")
                await response(scope, receive, send)
                return
        await app(scope, receive, send)

    return guarded
