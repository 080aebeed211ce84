"""Work for a client that has gone away is cancelled: a long poll or a chat's wait ends when its client leaves.

Each request is driven over ASGI as a server drives it: the body, then `http.disconnect` once the client
closes its connection. No worker runs, so nothing would end these waits but the disconnect.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from helpers import eventually, serve
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import Message
from temporalio.client import Client

from ai.support import sign_in
from api.app import create_app
from settings import Settings

PROMPTLY = 10  # seconds; every wait below would otherwise last 60


class LeavingClient:
    """One request whose client disconnects when `leave` is set, as uvicorn reports it to the app."""

    def __init__(self, method: str, path: str, headers: dict[str, str], *, query: str = "", body: Any = None):
        self.body = b"" if body is None else json.dumps(body).encode()
        self.scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": [(b"host", b"testserver"), (b"content-type", b"application/json")]
            + [(name.lower().encode(), value.encode()) for name, value in headers.items()],
            "client": ("127.0.0.1", 40000),
            "server": ("testserver", 80),
        }
        self.leave = asyncio.Event()
        self.statuses: list[int] = []
        self._body_sent = False

    async def receive(self) -> Message:
        if not self._body_sent:
            self._body_sent = True
            return {"type": "http.request", "body": self.body, "more_body": False}
        await self.leave.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.statuses.append(message["status"])


def sample(name: str, wait: str) -> float:
    return REGISTRY.get_sample_value(name, {"wait": wait}) or 0.0


async def leaves_while_waiting(app: Any, client: LeavingClient, wait: str) -> None:
    """Send the request, let the service start its wait, disconnect: the app must be done with it promptly."""
    abandoned = sample("statex_waits_abandoned_total", wait)
    request = asyncio.create_task(app(client.scope, client.receive, client.send))

    async def waiting() -> bool:
        return sample("statex_waits_in_progress", wait) == 1

    await eventually(waiting, what=f"the {wait} wait to begin")
    client.leave.set()
    await asyncio.wait_for(request, PROMPTLY)  # the request's task is released, not held for the full wait
    assert sample("statex_waits_in_progress", wait) == 0
    assert sample("statex_waits_abandoned_total", wait) == abandoned + 1
    assert client.statuses == [499]  # nobody reads it; the log and the metrics tell it from an answer


async def test_a_long_poll_stops_waiting_when_its_client_disconnects(
    temporal: Client, engine: AsyncEngine, settings: Settings
) -> None:
    app = create_app(settings, temporal=temporal)
    async with serve(app) as api:
        account = await sign_in(api, engine)
        submitted = await api.post("/api/ai/prototype", json={"idea": "Cats"}, headers=account["headers"])
        assert submitted.status_code == 202, submitted.text
        poll = LeavingClient("GET", submitted.json()["status_url"], account["headers"], query="wait=60")
        await leaves_while_waiting(app, poll, "prototype")
        still_served = await api.get(submitted.json()["status_url"], headers=account["headers"])
        assert still_served.status_code == 200  # the prototype itself is untouched


async def test_a_chat_stops_waiting_for_its_answer_when_its_client_disconnects(
    temporal: Client, engine: AsyncEngine, settings: Settings
) -> None:
    app = create_app(settings.model_copy(update={"ai_chat_wait_seconds": 60}), temporal=temporal)
    async with serve(app) as api:
        account = await sign_in(api, engine)
        chat = LeavingClient("POST", "/api/ai/chat", account["headers"], body={"message": "Hello?"})
        await leaves_while_waiting(app, chat, "chat")


async def test_a_client_that_stays_gets_its_answer(temporal: Client, engine: AsyncEngine, settings: Settings) -> None:
    """The watcher does not end waits by itself: a short long poll whose client stays is answered in full."""
    app = create_app(settings, temporal=temporal)
    async with serve(app) as api:
        account = await sign_in(api, engine)
        submitted = await api.post("/api/ai/prototype", json={"idea": "Dogs"}, headers=account["headers"])
        abandoned = sample("statex_waits_abandoned_total", "prototype")
        answered = await api.get(submitted.json()["status_url"], params={"wait": 1}, headers=account["headers"])
        assert answered.status_code == 200 and answered.json()["status"] in {"QUEUED", "RUNNING"}
        assert sample("statex_waits_abandoned_total", "prototype") == abandoned
