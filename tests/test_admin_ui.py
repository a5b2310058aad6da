"""The admin UI at ``/ojs/admin/``, driven in a real browser against a real server, and the
supervision-tree endpoint it draws (``GET /ojs/v1/admin/system/tree``).

The browser is Debian's Chromium (``make test`` installs it: tools/ensure_chromium.sh),
driven by Playwright without Playwright's own browser downloads. The server requires an
API key, so every panel below also shows the UI sending it.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from playwright.sync_api import BrowserContext, Page, Playwright, expect, sync_playwright
from serving import OjsServer

from ojs_actors.actors import Actor, ChildSpec, Supervisor, supervision_tree
from ojs_actors.http import HttpSettings, create_app
from ojs_actors.system import System

CHROMIUM = os.environ.get("OJS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
KEY = "admin-ui-test-key"
UI_TIMEOUT_MS = 10_000


# -- the endpoint and the pages, in process ----------------------------------------------


async def test_tree_lists_every_actor_with_its_mailbox(system: System) -> None:
    await system.enqueue({"type": "t", "args": [], "options": {"queue": "tree-q"}})
    client = create_app(system, HttpSettings(api_keys=(KEY,))).test_client()
    refused = await client.get("/ojs/v1/admin/system/tree")
    assert refused.status_code == 401
    response = await client.get(
        "/ojs/v1/admin/system/tree", headers={"Authorization": f"Bearer {KEY}"}
    )
    assert response.status_code == 200
    tree = (await response.get_json())["tree"]
    assert (tree["name"], tree["kind"], tree["state"]) == ("root", "supervisor", "running")
    names = [child["name"] for child in tree["children"]]
    assert names[:2] == ["scheduler", "queues"] and "crons" in names and "workflows" in names
    [queues] = [child for child in tree["children"] if child["name"] == "queues"]
    [actor] = [child for child in queues["children"] if child["name"] == "queue:tree-q"]
    assert actor["kind"] == "actor" and actor["type"] == "QueueActor"
    assert actor["state"] == "running" and actor["restarts"] == 0
    assert actor["mailbox_depth"] == 0 and actor["mailbox_capacity"] > 0
    assert actor["restart"] == "permanent" and actor["children"] == []
    assert queues["strategy"] == "one_for_one" and queues["mailbox_depth"] is None


async def test_tree_limits_children_and_counts_them_all(system: System) -> None:
    for name in ("a", "b", "c"):
        await system.enqueue({"type": "t", "args": [], "options": {"queue": f"limit-{name}"}})
    client = create_app(system).test_client()
    tree = (await (await client.get("/ojs/v1/admin/system/tree?limit=2")).get_json())["tree"]
    assert [child["name"] for child in tree["children"]] == ["scheduler", "queues"]
    assert tree["children_total"] >= 4
    queues = tree["children"][1]
    assert len(queues["children"]) == 2 and queues["children_total"] == 3
    bad = await client.get("/ojs/v1/admin/system/tree?limit=0")
    assert bad.status_code == 400


class _Crashy(Actor):
    async def receive(self, message: Any) -> Any:
        raise RuntimeError("boom")


async def test_tree_counts_restarts_and_tells_stopped_children() -> None:
    supervisor = Supervisor("top", max_restarts=10, children=[ChildSpec("crashy", _Crashy)])
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        await supervisor.ref("crashy").tell("crash")
        with trio.fail_after(5):
            while True:  # the crash and the restart happen in the supervisor's own tasks
                await trio.sleep(0.01)
                if supervision_tree(supervisor).children[0].restarts == 1:
                    break
        crashy = supervision_tree(supervisor).children[0]
        assert (crashy.state, crashy.type, crashy.mailbox_depth) == ("running", "_Crashy", 0)
        supervisor.request_stop()
    assert supervision_tree(supervisor).state == "stopped"


async def test_pages_are_served_without_a_key(system: System) -> None:
    client = create_app(system, HttpSettings(api_keys=(KEY,))).test_client()
    page = await client.get("/ojs/admin/")
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert b'src="app.js"' in await page.get_data()
    script = await client.get("/ojs/admin/app.js")
    assert script.status_code == 200
    assert script.headers["Content-Type"].startswith("text/javascript")
    redirect = await client.get("/ojs/admin")
    assert redirect.status_code == 308 and redirect.headers["Location"] == "/ojs/admin/"
    missing = await client.get("/ojs/admin/nope.js")
    assert missing.status_code == 401  # not an asset: not an open path either
    missing = await client.get("/ojs/admin/nope.js", headers={"Authorization": f"Bearer {KEY}"})
    assert missing.status_code == 404


# -- in the browser ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OjsServer]:
    log = tmp_path_factory.mktemp("admin-ui") / "server.log"
    started = OjsServer(["--backend", "memory"], log, env={"OJS_API_KEY": KEY}, poll_interval=0.1)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def api(server: OjsServer) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: sudo apt-get install -y chromium")
    profile = tmp_path_factory.mktemp("chromium-profile")
    # Playwright's sync API runs an asyncio loop of its own. Once trio-asyncio is imported
    # (the asyncio backends' bridge, by any test module collected before this one), new
    # loops outside trio are trio-asyncio's, which leave trio's run state behind them;
    # a policy set in this thread makes them plain asyncio loops again.
    asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())
    try:
        with sync_playwright() as playwright:
            context = _launch(playwright, profile)
            context.set_default_timeout(UI_TIMEOUT_MS)
            try:
                yield context
            finally:
                context.close()
    finally:
        asyncio.set_event_loop_policy(None)


def _launch(playwright: Playwright, profile: Path) -> BrowserContext:
    return playwright.chromium.launch_persistent_context(
        str(profile),
        executable_path=CHROMIUM,
        args=CHROMIUM_ARGS,
        headless=True,
        viewport={"width": 1280, "height": 800},
    )


@pytest.fixture
def ui(
    browser: BrowserContext, server: OjsServer, tmp_path: Path
) -> Iterator[Callable[[str], Page]]:
    """Open the UI at a panel (``#queues``, ``#job/<id>``, ...), entering the API key the
    first time it asks; screenshots of every page opened land in the test's tmp_path."""
    pages: list[Page] = []
    errors: list[str] = []

    def open_ui(hash_: str) -> Page:
        page = browser.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        pages.append(page)
        page.goto(f"{server.url}/ojs/admin/{hash_}")
        expect(page.locator("#key-dialog")).to_be_visible()  # no key yet: the API said 401
        page.fill("#key-input", KEY)
        page.click("#key-form button[type=submit]")
        expect(page.locator("#key-dialog")).to_be_hidden()
        return page

    yield open_ui
    for number, page in enumerate(pages):
        page.screenshot(path=str(tmp_path / f"page-{number}.png"), full_page=True)
        page.close()
    assert errors == []


def _enqueue(api: httpx.Client, queue: str, **options: Any) -> str:
    body = {"type": "ui.test", "args": [queue], "options": {"queue": queue, **options}}
    response = api.post("/ojs/v1/jobs", json=body)
    response.raise_for_status()
    job_id: str = response.json()["job"]["id"]
    return job_id


def _fetch(api: httpx.Client, queue: str) -> dict[str, Any]:
    jobs = api.post("/ojs/v1/workers/fetch", json={"queues": [queue]}).json()["jobs"]
    assert len(jobs) == 1
    job: dict[str, Any] = jobs[0]
    return job


def _eventually(check: Callable[[], bool], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not within the deadline"
        time.sleep(0.1)


def test_pause_and_resume_a_queue(
    ui: Callable[[str], Page], api: httpx.Client, tmp_path: Path
) -> None:
    _enqueue(api, "ui-pause")
    page = ui("#queues")
    row = page.locator('tr[data-queue="ui-pause"]')
    expect(row).to_have_attribute("data-paused", "false")
    row.get_by_role("button", name="Pause").click()
    expect(row).to_have_attribute("data-paused", "true")
    expect(row.locator(".badge")).to_have_text("paused")
    page.screenshot(path=str(tmp_path / "paused.png"))
    assert api.get("/ojs/v1/queues/ui-pause/stats").json()["queue"]["paused"] is True
    row.get_by_role("button", name="Resume").click()
    expect(row).to_have_attribute("data-paused", "false")
    assert api.get("/ojs/v1/queues/ui-pause/stats").json()["queue"]["paused"] is False


def test_retry_a_dead_lettered_job(
    ui: Callable[[str], Page], api: httpx.Client, tmp_path: Path
) -> None:
    retry = {"max_attempts": 1, "on_exhaustion": "dead_letter"}
    job_id = _enqueue(api, "ui-dead", retry=retry)
    _fetch(api, "ui-dead")
    error = {"code": "smtp_refused", "message": "SMTP connection refused"}
    api.post("/ojs/v1/workers/nack", json={"job_id": job_id, "error": error}).raise_for_status()
    page = ui("#dead-letter")
    row = page.locator(f'tr[data-job="{job_id}"]')
    expect(row).to_contain_text("SMTP connection refused")
    page.screenshot(path=str(tmp_path / "dead-letter.png"))
    row.get_by_role("button", name="Retry").click()
    expect(row).to_have_count(0)
    dead = api.get("/ojs/v1/dead-letter", params={"queue": "ui-dead"}).json()["jobs"]
    assert job_id not in [job["id"] for job in dead]
    assert api.get(f"/ojs/v1/jobs/{job_id}").json()["job"]["state"] == "available"


def test_watch_a_job_complete(ui: Callable[[str], Page], api: httpx.Client, tmp_path: Path) -> None:
    job_id = _enqueue(api, "ui-watch")
    page = ui(f"#job/{job_id}")
    state = page.locator(".job-state")
    expect(state).to_have_attribute("data-state", "available")
    expect(page.locator(".job-head")).to_contain_text(job_id)
    assert _fetch(api, "ui-watch")["id"] == job_id
    expect(state).to_have_attribute("data-state", "active")
    ack = {"job_id": job_id, "result": {"sent": 3}}
    api.post("/ojs/v1/workers/ack", json=ack).raise_for_status()
    expect(state).to_have_attribute("data-state", "completed")
    expect(page.locator(".columns")).to_contain_text('"sent": 3')
    expect(page.locator(".timeline")).to_contain_text("job.completed")
    page.screenshot(path=str(tmp_path / "job.png"), full_page=True)


def test_the_supervision_tree_shows_a_queue_actor(
    ui: Callable[[str], Page], api: httpx.Client, tmp_path: Path
) -> None:
    _enqueue(api, "ui-tree")
    page = ui("#supervision")
    actor = page.locator('.tree-row[data-actor="queue:ui-tree"]')
    expect(actor).to_have_attribute("data-state", "running")
    expect(actor).to_contain_text("QueueActor")
    expect(actor.locator("meter")).to_have_count(1)
    expect(page.locator('.tree-row[data-actor="root"]')).to_contain_text("one_for_one")
    _enqueue(api, "ui-tree-later")  # live: a new actor shows up without a reload
    expect(page.locator('.tree-row[data-actor="queue:ui-tree-later"]')).to_be_visible()
    page.screenshot(path=str(tmp_path / "tree.png"), full_page=True)
