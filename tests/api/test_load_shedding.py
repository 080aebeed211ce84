"""Overload sheds load: past API_MAX_CONCURRENCY requests in flight, the next one is a 503 at once."""

from __future__ import annotations

import asyncio

import httpx
from conftest import AppFactory
from starlette.types import Receive, Scope, Send

from api.shedding import LoadShedding

LIMIT = 3


class HeldApp:
    """Every request waits on one event: as many stay in flight as the test sends."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.entered = 0
        self._arrival = asyncio.Condition()

    async def entered_by(self, count: int) -> None:
        async with self._arrival:
            await self._arrival.wait_for(lambda: self.entered >= count)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with self._arrival:
            self.entered += 1
            self._arrival.notify_all()
        await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})


async def test_the_request_past_the_bound_gets_a_503_at_once_and_capacity_comes_back() -> None:
    held = HeldApp()
    shedding = LoadShedding(held, max_in_flight=LIMIT)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=shedding), base_url="http://t") as http:
        in_flight = [asyncio.create_task(http.get("/api/files")) for _ in range(LIMIT)]
        await held.entered_by(LIMIT)
        refused = await http.get("/api/files")  # answered while the others are still held
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["error"] == "The service is busy; please retry in a moment"
        assert held.entered == LIMIT  # the refused request never reached the app

        held.release.set()
        assert [response.status_code for response in await asyncio.gather(*in_flight)] == [200] * LIMIT
        assert shedding.in_flight == 0
        assert (await http.get("/api/files")).status_code == 200


async def test_probes_are_never_shed() -> None:
    held = HeldApp()
    shedding = LoadShedding(held, max_in_flight=1)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=shedding), base_url="http://t") as http:
        busy = asyncio.create_task(http.get("/api/files"))
        await held.entered_by(1)
        probes = [asyncio.create_task(http.get(path)) for path in ("/health", "/ready", "/metrics")]
        await held.entered_by(4)  # each probe reached the app although the bound is taken
        assert (await http.get("/api/files")).status_code == 503
        held.release.set()
        assert [response.status_code for response in await asyncio.gather(busy, *probes)] == [200] * 4


def test_create_app_bounds_requests_by_the_setting(make_app: AppFactory) -> None:
    app = make_app(api_max_concurrency=5)
    (shedding,) = [middleware for middleware in app.user_middleware if middleware.cls is LoadShedding]
    assert shedding.kwargs == {"max_in_flight": 5}
