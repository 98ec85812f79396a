"""The UI in a real browser: Debian's Chromium, driven by Playwright for Python (never its own browser
download), against a real daemon (``resonate serve --ui-port``) and real worker processes running
examples/orders.py.

What a person does: log in through the address ``resonate ui`` prints (the token leaves the address
bar), see invoked workflows appear in the list as they start and change state (the list is never
reloaded), open one that waits for a person and watch it (never reloaded either), answer it from the
waiting page in another tab (a bad JSON value first: refused, said), see the first tab fill in the
remaining steps and the result live; then open a failed order, deploy the fix (a worker with a higher card
limit) and retry it from the page, and see it complete; fork the approved order from its step 2 and see
the fork run its last steps while the first two are marked reused; log out. Every wait is Playwright's
bounded wait on the page.

``RESONATE_UI_SCREENSHOTS=docs`` writes the screenshots README shows (docs/ui-*.png).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from daemon_proc import Daemon, free_port

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")
CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install -y chromium "
                                                          "chromium-driver; .ci/run does it)")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ORDERS = os.path.join(ROOT, "examples", "orders.py")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-sync"]
WAIT_MS = 20_000  # Playwright's bound on each wait: far above what any step takes here


def cli(d: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "resonate_cli", "--socket", d.socket, *args], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return done


class Workers:
    """`resonate worker examples/orders.py` processes, with the card limit each was deployed with."""

    def __init__(self, d: Daemon) -> None:
        self.d = d
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, limit: int) -> None:
        env = {**os.environ, "ORDERS_CARD_LIMIT": str(limit)}
        with open(os.path.join(self.d.dir, "worker.log"), "ab") as log:
            self.procs.append(subprocess.Popen([sys.executable, "-m", "resonate_cli", "--socket", self.d.socket,
                                                "worker", ORDERS], env=env, cwd=ROOT, stdout=log, stderr=log))

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=30)
        self.procs.clear()


@pytest.fixture
def system() -> Iterator[tuple[Daemon, Workers, int]]:
    ui = free_port()
    d = Daemon("--ui-port", str(ui), "--retention", "off", dir=tempfile.mkdtemp(dir="/tmp", prefix="rub-"))
    d.command = ["-m", "resonate_cli", "serve"]
    d.start(timeout=60)
    workers = Workers(d)
    workers.start(limit=100)
    try:
        yield d, workers, ui
    finally:
        workers.stop()
        d.stop()
        d.cleanup()


@pytest.fixture
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


def invoke(d: Daemon, func: str, arg: dict[str, Any], id: str) -> None:
    cli(d, "invoke", func, json.dumps(arg), "--id", id, "--no-wait", "--queue")


def shot(page: Any, name: str) -> None:
    where = os.environ.get("RESONATE_UI_SCREENSHOTS") or tempfile.gettempdir()
    page.screenshot(path=os.path.join(where, name), full_page=True)


def test_watch_and_operate_workflows_in_a_browser(system: tuple[Daemon, Workers, int], browser: Any) -> None:
    d, workers, port = system
    expect = sync_api.expect
    expect.set_options(timeout=WAIT_MS)
    base = f"http://127.0.0.1:{port}"
    context = browser.new_context(viewport={"width": 1200, "height": 420})
    page = context.new_page()
    page.goto(cli(d, "ui", "--no-open").stdout.strip())  # logs this browser in, lands on the list
    assert page.url == f"{base}/ui/"  # the token is out of the address bar
    expect(page.locator("h1")).to_contain_text("Workflows")
    expect(page.locator("#workflows")).to_contain_text("No workflows yet")

    # the list is live: workflows appear, and change state, while the page stays as it is
    page.evaluate("window.notReloaded = true")
    invoke(d, "order", {"id": 7, "amount": 30}, "order-7")
    invoke(d, "order", {"id": 8, "amount": 500}, "order-8")
    invoke(d, "approve_order", {"id": 9, "amount": 20}, "order-9")
    expect(page.locator('tr[data-id="order-7"]')).to_have_attribute("data-state", "RESOLVED")
    expect(page.locator('tr[data-id="order-8"]')).to_have_attribute("data-state", "REJECTED")
    expect(page.locator('tr[data-id="order-9"]')).to_have_attribute("data-state", "PENDING")
    assert page.evaluate("window.notReloaded") is True

    # order-9 waits for a person at its second step; this tab watches it and is never reloaded
    page.locator('tr[data-id="order-9"] a').click()
    expect(page.locator("#live h1")).to_have_attribute("data-root-state", "PENDING")
    expect(page.locator('#steps tr[data-step="order-9.2"]')).to_be_visible()
    expect(page.locator('ul.tree li[data-step="order-9.2"]')).to_contain_text("waiting on a person")

    other = context.new_page()
    other.goto(f"{base}/ui/waiting")
    card = other.locator('section[data-id="order-9.2"]')
    expect(card).to_contain_text("approve order 9 of 20?")
    shot(other, "ui-waiting.png")
    card.locator("textarea").fill("{approved: yes}")
    card.locator('button[value="resolve"]').click()
    expect(other.locator(".flash.bad")).to_contain_text("not valid JSON")
    expect(other.locator("section[data-id=\"order-9.2\"] textarea")).to_have_value("{approved: yes}")  # kept
    assert "approved" not in other.url  # what was typed is in no address, nor the history
    other.locator('section[data-id="order-9.2"] textarea').fill('{"approved": true}')
    other.locator('section[data-id="order-9.2"] button[value="resolve"]').click()
    expect(other.locator(".flash.ok")).to_contain_text("order-9.2 is RESOLVED")

    # the watching tab fills in charge and ship, and the result, from the daemon's change stream
    expect(page.locator('#steps tr[data-step="order-9.4"]')).to_have_attribute("data-state", "RESOLVED")
    expect(page.locator("#live h1")).to_have_attribute("data-root-state", "RESOLVED")
    expect(page.locator("pre.result")).to_contain_text('"shipped": "shipped 9"')
    page.locator("#steps details").first.evaluate("d => d.open = true")
    shot(page, "ui-workflow.png")

    # a failed order: its error and traceback; the fix deployed; retried from the page
    page.goto(f"{base}/ui/workflow?id=order-8")
    expect(page.locator("#live h1")).to_have_attribute("data-root-state", "REJECTED")
    expect(page.locator(".io .err")).to_contain_text("CardDeclined: 500 is over the card's limit of 100")
    other.goto(f"{base}/ui/")
    expect(other.locator('tr[data-id="order-8"] .err')).to_contain_text("CardDeclined")
    shot(other, "ui-workflows.png")
    workers.stop()
    workers.start(limit=1000)
    page.locator('button[data-action="retry"]').click()
    expect(page.locator(".flash.ok")).to_contain_text("order-8 runs again")
    expect(page.locator("#live h1")).to_have_attribute("data-root-state", "RESOLVED")
    expect(page.locator('#steps tr[data-step="order-8.3"]')).to_have_attribute("data-state", "RESOLVED")
    expect(page.locator("pre.result")).to_contain_text('"charged": 500')

    page.goto(f"{base}/ui/")
    expect(page.locator('tr[data-id="order-8"] .state')).to_have_text("resolved")
    other.goto(f"{base}/ui/workers")
    expect(other.locator("main")).to_contain_text("approve_order")

    # fork the approved order from step 2: reserve and the approval are reused, charge and ship run again
    page.goto(f"{base}/ui/workflow?id=order-9")
    fork = page.locator('form:has(button[data-action="fork"])')
    fork.locator('input[name="from_step"]').fill("2")
    fork.locator('input[name="new_id"]').fill("order-9-again")
    fork.locator('button[data-action="fork"]').click()
    expect(page.locator(".flash.ok")).to_contain_text("forked order-9 as order-9-again")
    expect(page.locator("#live h1")).to_have_attribute("data-root-state", "RESOLVED")  # ran, live
    expect(page.locator(".forked")).to_contain_text("forked from order-9: steps 1–2 reused")
    for n, reused in ((1, True), (2, True), (3, False), (4, False)):
        row = page.locator(f'#steps tr[data-step="order-9-again.{n}"]')
        expect(row).to_have_attribute("data-state", "RESOLVED")
        expect(row.locator(".reused")).to_have_count(1 if reused else 0)
    expect(page.locator("pre.result")).to_contain_text('"shipped": "shipped 9"')
    shot(page, "ui-fork.png")

    # log out: this browser's session is over, in every tab
    page.locator('button[data-action="logout"]').click()
    expect(page.locator("h1")).to_have_text("Logged out")
    other.goto(f"{base}/ui/")
    expect(other.locator("h1")).to_have_text("Not logged in")  # no session: run `resonate ui` again
    context.close()
