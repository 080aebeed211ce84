"""Event streams cannot starve anyone: a flood of streams from one account is bounded (429 with
Retry-After) while everyone else is answered at once, never 503; many streams on one prototype cost one
watcher's workflow queries; a stream ends soon after its session is revoked."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from helpers import eventually, serve
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client, Interceptor, OutboundInterceptor, QueryWorkflowInput

from ai.support import sign_in
from ai.test_prototype_events import IDEA, read_events, read_stream, submit
from api.app import create_app
from services.prototypes import EventWatchers
from settings import Settings
from worker import build_worker


def watchers_of(app: Any) -> EventWatchers:
    watchers: EventWatchers = app.state.event_watchers
    return watchers


async def test_a_flood_of_streams_is_bounded_and_everyone_else_is_answered_at_once(
    temporal: Client, engine: AsyncEngine, settings: Settings
) -> None:
    """Three requests in flight at most, three streams per account: the owner's three streams stay open (no worker:
    nothing happens), the fourth is a 429 with Retry-After, and another user is answered, not shed."""
    bounded = settings.model_copy(
        update={"api_max_concurrency": 3, "prototype_events_per_user": 3, "prototype_events_max_seconds": 60}
    )
    app = create_app(bounded, temporal=temporal)
    async with serve(app) as api:
        owner, other = await sign_in(api, engine), await sign_in(api, engine)
        prototype_id = await submit(api, owner)
        streams = [asyncio.create_task(read_stream(api, owner, prototype_id)) for _ in range(3)]

        async def all_open() -> bool:
            return watchers_of(app).open == 3

        await eventually(all_open, what="three open streams")
        refused = await asyncio.wait_for(api.get(f"/api/prototypes/{prototype_id}/events", headers=owner["headers"]), 5)
        answered = [
            (await asyncio.wait_for(api.get("/auth/me", headers=other["headers"]), 5)).status_code for _ in range(3)
        ]
        catalogue = await asyncio.wait_for(api.get("/api/capabilities"), 5)
        assert not any(stream.done() for stream in streams)  # all of the above came while the streams were open
        for stream in streams:
            stream.cancel()
        await asyncio.gather(*streams, return_exceptions=True)

        async def all_closed() -> bool:
            return watchers_of(app).open == 0 and not watchers_of(app).logs

        await eventually(all_closed, what="the streams' places and watcher to be given back")

    assert refused.status_code == 429, refused.text
    assert int(refused.headers["retry-after"]) >= 1
    assert "event streams open" in refused.json()["error"]
    assert answered == [200, 200, 200]
    assert catalogue.status_code == 200


class CountedQueries(Interceptor):
    """Every `events` query the API's client sends, with when it was sent."""

    def __init__(self) -> None:
        self.sent: list[float] = []

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        counted = self

        class Counting(OutboundInterceptor):
            async def query_workflow(self, input: QueryWorkflowInput) -> Any:
                if input.query == "events":
                    counted.sent.append(time.monotonic())
                return await super().query_workflow(input)

        return Counting(next)


async def test_many_streams_on_one_prototype_cost_one_watchers_queries(
    temporal: Client, engine: AsyncEngine, settings: Settings
) -> None:
    """Ten streams on a prototype held AWAITING_APPROVAL: the workflow is asked once per poll interval, not ten
    times; the watcher stops with the last stream."""
    poll, streams_open = 0.5, 10
    counted = CountedQueries()
    client = Client(**{**temporal.config(), "interceptors": [counted]})
    app = create_app(
        settings.model_copy(update={"prototype_events_poll_seconds": poll, "prototype_events_per_user": streams_open}),
        temporal=client,
    )
    async with serve(app) as api, build_worker(temporal, settings, engine):
        owner = await sign_in(api, engine)
        accepted = await api.post(
            "/api/ai/prototype", json={**IDEA, "review_requirements": True}, headers=owner["headers"]
        )
        assert accepted.status_code == 202, accepted.text
        prototype_id = accepted.json()["prototype_id"]
        streams = [asyncio.create_task(read_stream(api, owner, prototype_id)) for _ in range(streams_open)]

        async def waiting_for_approval() -> bool:
            shared = watchers_of(app).logs.get(uuid.UUID(prototype_id))
            opened = watchers_of(app).open == streams_open
            return opened and shared is not None and any(e.kind == "approval_needed" for e in shared.events)

        await eventually(waiting_for_approval, within=60, what="ten streams on a prototype awaiting approval")
        start = len(counted.sent)

        async def six_more_queries() -> bool:
            return len(counted.sent) >= start + 6

        await eventually(six_more_queries, what="six more polls")
        window = counted.sent[start : start + 6]
        # One watcher: five intervals of `poll` at least. One query per stream per poll: ten in each interval.
        assert window[-1] - window[0] >= 5 * poll * 0.8, [round(t - window[0], 3) for t in window]
        assert len(watchers_of(app).logs) == 1
        for stream in streams:
            stream.cancel()
        await asyncio.gather(*streams, return_exceptions=True)

        async def stopped() -> bool:
            return not watchers_of(app).logs

        await eventually(stopped, what="the watcher to stop with its last stream")
        after_stop = len(counted.sent)
        await api.get(f"/api/prototypes/{prototype_id}", headers=owner["headers"])  # a progress query, not events
        assert len(counted.sent) == after_stop


async def test_a_stream_ends_after_logout_and_its_url_opens_nothing_more(
    temporal: Client, engine: AsyncEngine, settings: Settings
) -> None:
    """Streams by the bearer token and by `events_url`, on a prototype that makes no progress (no worker): a logout
    ends both within the session check's interval, and the URL is a 401 from then on."""
    checked = settings.model_copy(
        update={"prototype_events_session_check_seconds": 0.2, "prototype_events_max_seconds": 120}
    )
    app = create_app(checked, temporal=temporal)
    async with serve(app) as api:
        owner = await sign_in(api, engine)
        bystander = await sign_in(api, engine)
        accepted = await api.post("/api/ai/prototype", json=IDEA, headers=owner["headers"])
        assert accepted.status_code == 202, accepted.text
        prototype_id, events_url = accepted.json()["prototype_id"], accepted.json()["events_url"]
        others = await submit(api, bystander)
        streams = [
            asyncio.create_task(read_stream(api, owner, prototype_id)),
            asyncio.create_task(read_events(api, events_url)),
        ]
        unrelated = asyncio.create_task(read_stream(api, bystander, others))

        async def all_open() -> bool:
            return watchers_of(app).open == 3

        await eventually(all_open, what="three open streams")
        logout = await api.post("/auth/logout", json={"refresh_token": owner["refresh_token"]})
        assert logout.status_code == 204
        ended = await asyncio.wait_for(asyncio.gather(*streams), 10)
        reopened = await api.get(events_url)
        assert not unrelated.done()  # another session's stream goes on
        unrelated.cancel()
        await asyncio.gather(unrelated, return_exceptions=True)

    assert ended == [[], []]  # no event had come: each ended without one
    assert reopened.status_code == 401, reopened.text


async def test_the_load_shedding_middleware_lets_an_open_stream_go(
    temporal: Client, engine: AsyncEngine, settings: Settings
) -> None:
    """With one request in flight at most, an open stream does not hold it."""
    app = create_app(settings.model_copy(update={"api_max_concurrency": 1}), temporal=temporal)
    async with serve(app) as api:
        owner = await sign_in(api, engine)
        prototype_id = await submit(api, owner)
        stream = asyncio.create_task(read_stream(api, owner, prototype_id))

        async def opened() -> bool:
            return watchers_of(app).open == 1

        await eventually(opened, what="the stream to open")
        statuses = [(await api.get("/auth/me", headers=owner["headers"])).status_code for _ in range(3)]
        stream.cancel()
        await asyncio.gather(stream, return_exceptions=True)
    assert statuses == [200, 200, 200]
