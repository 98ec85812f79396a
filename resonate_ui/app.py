"""The UI's routes: workflows (live), one workflow (live), waiting for a person, workers, schedules, status,
login and logout, and the actions.

Every read is one SDK call over ``web.EngineTransport`` (the same ops as ``resonate workflows list``,
``steps``/``tree``, ``workers``, ``schedules list`` and ``status``); ``pages`` turns the results into what
each template shows. Live pages hold a ``live.ChangeStream`` on the engine's change stream and fetch their
part again when it says something changed: the list's part with its own filters and page. Who may look and
act is ``sessions.Guard``'s; each request's ``Viewer`` rides in ``request.state``.
"""

from __future__ import annotations

import os
import time
from typing import Any
from urllib.parse import urlencode

import jinja2
from resonate_daemon.errors import PromiseNotFound, ResonateError
from resonate_daemon.protocol import ForkWorkflow, RetryWorkflow, SearchPromises, SearchTasks
from resonate_daemon.protocol.records import Promise
from resonate_daemon.protocol.results import Page
from resonate_daemon.protocol.workflow_ops import WORKFLOW_STATES
from resonate_daemon.server.api import AppState, daemon_status, search_off_loop
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from resonate.promises import Promises, Workflows
from resonate.render import duration, json_problem, state_word, when
from resonate.schedules import Schedules

from . import pages
from .live import GRAPH_EVERY_S, LIST_EVERY_S, ChangeStream, graph_changes, root_changes
from .sessions import COOKIE, Guard, Viewer
from .web import EngineTransport, read_form, safe_back, with_params

HERE = os.path.dirname(os.path.abspath(__file__))
PAGE = 50  # workflows a page
SINCE = {"1h": 3_600_000, "24h": 86_400_000, "7d": 604_800_000, "30d": 2_592_000_000}
ACTIONS = ("resolve", "reject", "cancel", "retry", "fork")
HEADERS = {"cache-control": "no-store", "referrer-policy": "no-referrer"}

_env = jinja2.Environment(loader=jinja2.FileSystemLoader(os.path.join(HERE, "templates")),
                          autoescape=True, undefined=jinja2.StrictUndefined)
_env.filters.update(when=when, duration=duration, state_word=state_word)


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
        viewer: Viewer | None = getattr(request.state, "viewer", None)
        base = {"csrf": viewer.csrf if viewer else "", "session": viewer is not None and viewer.session is not None,
                "read_only": self.guard.read_only, "now": self.engine.clock.now(),
                "msg": request.query_params.get("msg", ""), "error": request.query_params.get("error", ""),
                "path": request.url.path}
        html = _env.get_template(name).render({**base, **context})
        return HTMLResponse(html, status_code=code, headers=HEADERS)

    def message(self, request: Request, code: int, title: str, text: str, back: str = "") -> HTMLResponse:
        return self.render(request, "message.html", code, title=title, text=text, back=back)

    async def search(self, op: SearchPromises) -> Page[Promise]:
        """A search, off the event loop on the store's reader when there is one (as the API's)."""
        if self.state.reader is not None:
            return await search_off_loop(self.engine, self.state.batch, self.state.reader, op)
        return self.transport.call(op)

    # -- the workflows list (live) ------------------------------------------------------------------
    async def workflows_page(self, request: Request) -> Response:
        search = (request.query_params.get("q") or "").strip()
        if search:
            try:  # an exact id opens it
                found = self.promises.get(search)
                return RedirectResponse(f"/ui/workflow?{urlencode({'id': found.id})}", status_code=303)
            except PromiseNotFound:
                pass
        return self.render(request, "workflows.html", **await self._list(request))

    async def list_part(self, request: Request) -> Response:
        return self.render(request, "list.html", **await self._list(request))

    async def _list(self, request: Request) -> dict[str, Any]:
        q = request.query_params
        state, func, since = q.get("state") or None, q.get("func") or None, q.get("since") or None
        search = (q.get("q") or "").strip()
        if state is not None and state not in WORKFLOW_STATES:
            state = None
        keep = {k: v for k, v in (("q", search), ("state", state), ("func", func), ("since", since)) if v}
        live = f"/ui/list?{urlencode({**keep, **({'cursor': q['cursor']} if q.get('cursor') else {})})}"
        common = {"state": state or "", "func": func or "", "since": since or "", "search": search,
                  "states": list(WORKFLOW_STATES), "spans": list(SINCE), "functions": self._functions(), "live": live}
        now = self.engine.clock.now()
        if search:  # the workflows whose id contains the text, found off the loop
            pattern = "*" + "".join(f"[{c}]" if c in "*?[]" else c for c in search) + "*"
            page = await self.search(SearchPromises(pattern, None, {}, 500, None))
            roots = [p for p in page.items if pages.is_workflow(p)][:PAGE]
            return {**common, "rows": [pages.workflow_row(p, now) for p in roots], "total": len(roots),
                    "more": None, "first": None}
        start = now - SINCE[since] if since in SINCE else None
        items, cursor, total = self.workflows.search(state=state, func=func, since=start, limit=PAGE,
                                                     cursor=q.get("cursor") or None)
        return {**common, "rows": [pages.workflow_row(p, now) for p in items], "total": total,
                "more": f"?{urlencode({**keep, 'cursor': cursor})}" if cursor else None,
                "first": f"?{urlencode(keep)}" if q.get("cursor") else None}

    def _functions(self) -> list[str]:
        names = {f for procs in self.state.dispatcher.functions().values() for fs in procs.values() if fs for f in fs}
        return sorted(names)

    # -- one workflow (live) ------------------------------------------------------------------------
    async def workflow_page(self, request: Request) -> Response:
        id = request.query_params.get("id", "")
        context = pages.workflow(self.promises, id, self.engine.clock.now())
        if context is None:
            return self.message(request, 404, "Not found", f"No promise {id!r} in this daemon's store.", "/ui/")
        return self.render(request, "workflow.html", **context)

    async def workflow_part(self, request: Request) -> Response:
        context = pages.workflow(self.promises, request.query_params.get("id", ""), self.engine.clock.now())
        if context is None:
            return HTMLResponse("<p>gone</p>", status_code=404, headers=HEADERS)
        return self.render(request, "part.html", **context)

    async def workflow_events(self, request: Request) -> Response | ASGIApp:
        id = request.query_params.get("id", "")
        try:
            self.promises.get(id)
        except PromiseNotFound:
            return Response("no such promise", status_code=404)
        return self._stream(request, graph_changes(self.engine, id), GRAPH_EVERY_S)

    async def list_events(self, request: Request) -> ASGIApp:
        return self._stream(request, root_changes(self.engine), LIST_EVERY_S)

    def _stream(self, request: Request, changes: Any, every_s: float) -> ASGIApp:
        viewer: Viewer = request.state.viewer
        return ChangeStream(changes, every_s=every_s, ping_s=self.state.dispatcher.ping_interval_s,
                            alive=lambda: self.guard.alive(viewer))

    # -- the other pages ----------------------------------------------------------------------------
    async def waiting_page(self, request: Request) -> Response:
        """The promises waiting for a person (``ctx.promise()``), a full page at a time."""
        async def pending(cursor: str | None, limit: int) -> Page[Promise]:
            return await self.search(SearchPromises("*", "pending", {}, limit, cursor))

        q = request.query_params
        rows, cursor = await pages.waiting(pending, q.get("cursor") or None)
        return self.render(request, "waiting.html", rows=rows, more=f"?{urlencode({'cursor': cursor})}" if cursor else None,
                           first="/ui/waiting" if q.get("cursor") else None, focus=q.get("id", ""), data="",
                           scan=pages.WAIT_SCAN)

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
        size = await self.state.batch.call(self.engine.store.size)  # the backend's own count (file, or tables)
        return self.render(request, "status.html", status=status, size=size, retention=cfg.retention_ms,
                           durability=cfg.durability, uptime=int(time.monotonic() * 1000) - self.started_ms)

    # -- login and logout ---------------------------------------------------------------------------
    async def login(self, request: Request) -> Response:
        """``/ui/login?token=T`` (the address ``resonate ui`` prints): a session, then a clean address."""
        if self.guard.token is None:
            return RedirectResponse("/ui/", status_code=303)
        q = request.query_params
        if "token" in q:  # never answer with a page at this address: the token must leave the address bar
            session = self.guard.login(q["token"])
            if session is None:
                return RedirectResponse("/ui/login?failed=1", status_code=303, headers=HEADERS)
            response = RedirectResponse("/ui/", status_code=303, headers=HEADERS)
            response.set_cookie(COOKIE, session.id, httponly=True, samesite="strict", path="/ui",
                                secure=request.url.scheme == "https")
            return response
        if q.get("failed"):
            return self.message(request, 401, "Wrong token", "That address holds a token this daemon does not "
                                "know (an old one, or another daemon's). Run `resonate ui` for this daemon's address.")
        if q.get("bye"):
            return self.message(request, 200, "Logged out", "This browser's session is closed. Run `resonate ui` "
                                "to log in again.")
        return self.message(request, 401, "Log in", "Run `resonate ui` on this machine: it prints the address "
                            "that logs this browser in (and opens it when it can).")

    async def logout(self, request: Request) -> Response:
        viewer: Viewer = request.state.viewer
        form = await read_form(request, self.state.config.max_body)
        refused = self.guard.may_act(request, viewer, form.get("csrf", ""), changes=False)
        if refused is not None:
            return self.message(request, 403, "Refused", refused)
        self.guard.logout(viewer)
        response = RedirectResponse("/ui/login?bye=1", status_code=303, headers=HEADERS)
        response.delete_cookie(COOKIE, path="/ui", httponly=True, samesite="strict",
                               secure=request.url.scheme == "https")
        return response

    # -- actions ------------------------------------------------------------------------------------
    async def act(self, request: Request) -> Response:
        form = await read_form(request, self.state.config.max_body)
        field = {k: form.get(k, "") for k in ("action", "id", "data", "from_step", "new_id", "csrf", "back")}
        back, action, id = safe_back(field["back"]), field["action"], field["id"]
        refused = self.guard.may_act(request, request.state.viewer, field["csrf"])
        if refused is not None:
            return self.message(request, 403, "Refused", refused, back)
        problem = json_problem(field["data"]) if action in ("resolve", "reject") else None
        if problem is not None:
            return self._fix_value(request, action, id, field["data"], problem)
        try:
            msg, back = self._do(action, id, field, back)
        except (ResonateError, ValueError) as exc:
            return RedirectResponse(with_params(back, error=f"{action} {id}: {exc}"), status_code=303)
        return RedirectResponse(with_params(back, msg=msg), status_code=303)

    def _fix_value(self, request: Request, action: str, id: str, data: str, problem: str) -> Response:
        """A value that is not JSON: the promise's form again, with what was typed and why it was refused.
        Answered here (422), not by a redirect, so the value never goes into an address or the history."""
        try:
            promise = self.promises.get(id)
        except PromiseNotFound:
            return RedirectResponse(with_params("/ui/waiting", error=f"{action} {id}: no such promise"), status_code=303)
        error = f"{action} {id}: the value is {problem} (write JSON: {{\"approved\": true}}, \"text\", 42)"
        return self.render(request, "waiting.html", 422, rows=pages.cards([promise]), more=None, first=None,
                           focus=id, data=data, scan=pages.WAIT_SCAN, error=error)

    def _do(self, action: str, id: str, field: dict[str, str], back: str) -> tuple[str, str]:
        """Do it; what to say, and where to go then."""
        if action in ("resolve", "reject"):
            data = field["data"].strip() or None
            done = (self.promises.resolve if action == "resolve" else self.promises.reject)(id, data=data)
            return f"{id} is {done.state}", back
        if action == "cancel":
            promise, below = self.promises.cancel_tree(id)
            return f"{id} is {promise.state}; canceled {len(below)} pending below it", back
        if action == "retry":
            self.transport.call(RetryWorkflow(id))
            return f"{id} runs again", back
        if action == "fork":
            try:
                step = int(field["from_step"] or "0")
            except ValueError:
                raise ValueError(f"from step must be a number, not {field['from_step']!r}") from None
            fork = self.transport.call(ForkWorkflow(id, step, field["new_id"].strip() or None))
            return f"forked {id} as {fork.id}", f"/ui/workflow?{urlencode({'id': fork.id})}"
        raise ValueError(f"unknown action {action!r}; one of {', '.join(ACTIONS)}")


def create_ui(state: AppState, token: str | None) -> ASGIApp:
    """The UI app for one listener (``token``: required from browsers on TCP; None on the Unix socket)."""
    ui = Ui(state, token)

    def static(name: str, media: str) -> Any:
        async def serve(request: Request) -> Response:
            return FileResponse(os.path.join(HERE, "static", name), media_type=media)
        return serve

    open_routes = {"/login", "/static/ui.js", "/static/ui.css"}
    routes = [Route("/", ui.workflows_page), Route("/list", ui.list_part), Route("/list/events", ui.list_events),
              Route("/workflow", ui.workflow_page), Route("/workflow/part", ui.workflow_part),
              Route("/workflow/events", ui.workflow_events), Route("/waiting", ui.waiting_page),
              Route("/workers", ui.workers_page), Route("/schedules", ui.schedules_page),
              Route("/status", ui.status_page), Route("/login", ui.login),
              Route("/logout", ui.logout, methods=["POST"]), Route("/act", ui.act, methods=["POST"]),
              Route("/static/ui.js", static("ui.js", "text/javascript")),
              Route("/static/ui.css", static("ui.css", "text/css"))]
    app = Starlette(routes=routes)

    async def guarded(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            request = Request(scope)
            viewer = ui.guard.viewer(request)
            scope.setdefault("state", {})["viewer"] = viewer
            path = str(scope.get("path", ""))[len(scope.get("root_path", "")):]
            if viewer is None and path not in open_routes:
                response = ui.message(request, 401, "Not logged in", "This browser has no session with this "
                                      "daemon: it never logged in here, or its session ended (2 hours idle, a day "
                                      "after logging in, a logout, or a restart of the daemon). Run `resonate ui` "
                                      "in a terminal: it prints the address that logs this browser in.")
                await response(scope, receive, send)
                return
        await app(scope, receive, send)

    return guarded
