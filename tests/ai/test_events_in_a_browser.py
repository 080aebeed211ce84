"""The progress stream in a real browser: Debian's headless Chromium, driven through its chromedriver, opens
frontend-client's page from another origin than the API's (another port). The page asks the status endpoint
through the generated TypeScript client, opens the answer's `events_url` with EventSource, and receives the
events through `completed`; when the server ends a stream (PROTOTYPE_EVENTS_MAX_SECONDS), EventSource
reconnects by itself with Last-Event-ID and gets only the later events. (Chromium sends a short, plain
Last-Event-ID cross-origin without a preflight; browsers that do preflight it are answered as
test_prototype_events_url checks.)

The completed event's picture link (`preview_link`) loads as an image in the browser, from the page's origin:
a plain <img src>, with no Authorization header.

Needs /usr/bin/chromium and /usr/bin/chromedriver (Debian's chromium and chromium-driver), and for the stream's
page the built page (`make frontend-client`). Without them the tests are skipped, unless STATEX_REQUIRE_BROWSER=1
(CI), where they fail.
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn
from helpers import register_and_login
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Receive, Scope, Send
from temporalio.client import Client

from ai.test_prototype_events import IDEA, read_stream
from api.app import create_app
from settings import Settings
from worker import build_worker

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
PAGE = Path(__file__).resolve().parents[2] / "frontend-client"
T = TypeVar("T")


def require(*needs: tuple[Path, str]) -> None:
    """Skip without what the test needs, or fail under STATEX_REQUIRE_BROWSER=1 (CI)."""
    for needed, how in needs:
        if not needed.exists():
            why = f"{needed} is missing ({how})"
            if os.environ.get("STATEX_REQUIRE_BROWSER") == "1":
                pytest.fail(why)
            pytest.skip(why)


@pytest.fixture
def page() -> None:
    """The stream's page, built."""
    require((PAGE / "dist" / "events-page.js", "make frontend-client"))


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[webdriver.Chrome]:
    require((CHROMIUM, "apt-get install chromium"), (CHROMEDRIVER, "apt-get install chromium-driver"))
    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager, should anything call it, downloads nothing
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",  # as root, in a container
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


def free_socket() -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    return listener


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def page_server() -> Iterator[str]:
    """frontend-client/ as static files, the way a frontend's dev server would serve its page."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(PAGE)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class Requests:
    """The Last-Event-ID of each request for an event stream that reached the API (None: none sent)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.streams: list[str | None] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and scope["path"].endswith("/events"):
            headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
            self.streams.append(headers.get("last-event-id"))
        await self.app(scope, receive, send)


@asynccontextmanager
async def api_server(app: ASGIApp) -> AsyncIterator[str]:
    listener = free_socket()
    host, port = listener.getsockname()
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on", server_header=False)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline and not task.done(), "uvicorn did not start"
            await asyncio.sleep(0.05)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await task
        listener.close()


async def in_browser(
    driver: webdriver.Chrome, check: Callable[[dict[str, Any]], T | None], *, within: float, what: str
) -> T:
    """Poll the page's `window.statexProgress` until `check` finds what it waits for (never a fixed sleep)."""
    deadline = time.monotonic() + within
    progress: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        progress = await asyncio.to_thread(driver.execute_script, "return window.statexProgress ?? null")
        if progress is not None:
            assert not progress.get("problem"), progress
            if (found := check(progress)) is not None:
                return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {within}s waiting for {what}; the page has {progress}")


@pytest.mark.slow
@pytest.mark.usefixtures("page")
async def test_a_cross_origin_page_follows_the_stream_with_eventsource_and_resumes_after_a_reconnect(
    browser: webdriver.Chrome, temporal: Client, engine: AsyncEngine, settings: Settings
) -> None:
    with page_server() as page_origin:
        streamed = settings.model_copy(
            update={"cors_origins": [page_origin], "prototype_events_max_seconds": 2.0}  # each stream ends after 2 s
        )
        requests = Requests(create_app(streamed, temporal=temporal))
        async with (
            build_worker(temporal, streamed, engine),
            api_server(requests) as api_url,
            httpx.AsyncClient(base_url=api_url) as api,
        ):
            account = await register_and_login(api)
            headers = {"Authorization": f"Bearer {account['access_token']}"}
            # Paused after its requirements until approved: the first stream ends while nothing happens.
            paused = {**IDEA, "review_requirements": True}
            accepted = await api.post("/api/ai/prototype", json=paused, headers=headers)
            assert accepted.status_code == 202, accepted.text
            prototype_id = accepted.json()["prototype_id"]

            url = f"{page_origin}/index.html?api={api_url}&prototype={prototype_id}#{account['access_token']}"
            await asyncio.to_thread(browser.get, url)

            def waiting(progress: dict[str, Any]) -> int | None:
                kinds = [event["kind"] for event in progress["events"]]
                return progress["opened"] if "approval_needed" in kinds and progress["opened"] >= 2 else None

            # The first stream ended (2 s) after approval_needed; EventSource opened it again by itself.
            await in_browser(browser, waiting, within=60, what="approval_needed, then a reconnect")
            before = await in_browser(browser, lambda progress: progress, within=5, what="the page")
            approved = await api.post(
                f"/api/prototypes/{prototype_id}/approval", json={"approve": True}, headers=headers
            )
            assert approved.status_code == 200, approved.text

            def ended(progress: dict[str, Any]) -> dict[str, Any] | None:
                return progress if progress["ended"] else None

            progress = await in_browser(browser, ended, within=90, what="the completed event")
            from_the_browser = list(requests.streams)
            everything = await read_stream(api, {"headers": headers}, prototype_id)

    received = [(int(event["id"]), event["kind"], event["data"]["step"]) for event in progress["events"]]
    assert received == [(event["id"], event["kind"], event["step"]) for event in everything]  # once each, in order
    assert received[-1][1] == "completed" and "approval_needed" in [kind for _, kind, _ in received]
    assert progress["eventsUrl"].startswith(f"/api/prototypes/{prototype_id}/events?token=")
    # The first request had no Last-Event-ID; each reconnect named the last event the page had then.
    assert from_the_browser[0] is None and len(from_the_browser) >= 2
    resumed_from = [int(last) for last in from_the_browser[1:]]
    assert resumed_from == sorted(resumed_from) and resumed_from[0] == len(before["events"])


LOAD_IMAGE = """
const [source, done] = arguments;
const image = new Image();
image.onload = () => done({width: image.naturalWidth, height: image.naturalHeight});
image.onerror = () => done(null);
image.src = source;
"""


@pytest.mark.usefixtures("pictured")
async def test_the_completed_events_picture_link_loads_as_an_image_in_the_browser(
    browser: webdriver.Chrome, temporal: Client, engine: AsyncEngine, settings: Settings
) -> None:
    with page_server() as page_origin:
        async with (
            build_worker(temporal, settings, engine),
            api_server(create_app(settings, temporal=temporal)) as api_url,
            # the stream is quiet while the sandbox starts the app and shoots it: longer than httpx's 5 s default
            httpx.AsyncClient(base_url=api_url, timeout=60) as api,
        ):
            account = await register_and_login(api)
            headers = {"Authorization": f"Bearer {account['access_token']}"}
            accepted = await api.post("/api/ai/prototype", json=IDEA, headers=headers)
            assert accepted.status_code == 202, accepted.text
            completed = (await read_stream(api, {"headers": headers}, accepted.json()["prototype_id"]))[-1]
            assert completed["kind"] == "completed" and completed["preview_link"], completed
            link = urlsplit(completed["preview_link"])  # absolute, for PUBLIC_API_URL: asked here of this server
            await asyncio.to_thread(browser.set_script_timeout, 30)
            # A page of another origin (a frontend's), with no token or cookie of the API's
            await asyncio.to_thread(browser.get, f"{page_origin}/README.md")
            shown = await asyncio.to_thread(
                browser.execute_async_script, LOAD_IMAGE, f"{api_url}{link.path}?{link.query}"
            )
            tampered = await asyncio.to_thread(
                browser.execute_async_script, LOAD_IMAGE, f"{api_url}{link.path}?{link.query[:-2]}xx"
            )

    assert shown == {"width": 16, "height": 10}  # the PNG the sandbox gave, decoded by the browser
    assert tampered is None
