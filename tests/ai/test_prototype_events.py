"""GET /api/prototypes/{id}/events: the pipeline's progress as Server-Sent Events, read from the workflow's
event log. Every event once and in order, a resume after the last id seen, one request of the daily limit
however long the stream is open, someone else's prototype not found, and no database connection held while
the stream waits."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
from fakes.ai_server import FakeAIServer
from helpers import eventually, serve
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from ai.support import ReturnedConnections, finished, service, sign_in
from ai.test_verification import BROKEN, FIXED, PLAN, REQUIREMENTS, REVIEW, openai_only, script
from api.app import create_app
from models.prompts import STAGES
from settings import Settings
from worker import build_worker

IDEA = {"idea": "An app that books climbing gyms: members see free slots and reserve one."}
Event = dict[str, Any]


async def submit(api: httpx.AsyncClient, account: dict[str, Any]) -> str:
    accepted = await api.post("/api/ai/prototype", json=IDEA, headers=account["headers"])
    assert accepted.status_code == 202, accepted.text
    return str(accepted.json()["prototype_id"])


async def read_stream(
    api: httpx.AsyncClient, account: dict[str, Any], prototype_id: str, last_event_id: int | None = None
) -> list[Event]:
    """Read the stream to its end with the bearer token, parsing the SSE lines as a browser's EventSource would."""
    headers = dict(account["headers"])
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    return await read_events(api, f"/api/prototypes/{prototype_id}/events", headers)


async def read_events(api: httpx.AsyncClient, url: str, headers: dict[str, str] | None = None) -> list[Event]:
    events: list[Event] = []
    message: dict[str, str] = {}
    async with api.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if line.startswith(":"):  # a comment (the keep-alive): no event, as EventSource reads it
                continue
            if line:
                field, _, value = line.partition(":")
                message[field] = value.removeprefix(" ")
            elif message:
                data = json.loads(message["data"])
                assert (str(data["id"]), data["kind"]) == (message["id"], message["event"])
                events.append(data)
                message = {}
    assert not message, message
    return events


def unsigned(events: list[Event]) -> list[Event]:
    """The events without their links' signatures: a link is signed when it is sent, valid from that moment."""
    links = ("download_link", "preview_link")
    return [event | {link: (event[link] or "").partition("?")[0] for link in links} for event in events]


def outline(events: list[Event]) -> list[tuple[str, str | None]]:
    return [(event["kind"], event["step"]) for event in events]


def offline_outline() -> list[tuple[str, str | None]]:
    """What a prototype goes through with the offline provider: the template's code and tests pass the sandbox
    first time. The agents of a stage start together, and finish together once their files are verified."""
    expected: list[tuple[str, str | None]] = []
    for stage in STAGES:
        expected += [("step_started", step.name) for step in stage]
        expected += [("verification", step.name) for step in stage if step.holds_files][:1]
        expected += [("step_finished", step.name) for step in stage]
    return [*expected, ("step_started", "package"), ("step_finished", "package"), ("completed", None)]


async def test_the_stream_delivers_every_event_in_order_and_ends_with_the_download_link(
    temporal: Client, engine: AsyncEngine, settings: Settings
) -> None:
    async with service(temporal, engine, settings) as api:
        account = await sign_in(api, engine)
        prototype_id = await submit(api, account)
        events = await read_stream(api, account, prototype_id)
        done = await finished(api, temporal, account, prototype_id)

    assert [event["id"] for event in events] == list(range(1, len(events) + 1))
    assert outline(events) == offline_outline()
    answered = [event for event in events if event["kind"] == "step_finished" and event["step"] != "package"]
    assert {(event["provider"], event["model_used"], event["cost_usd_micros"]) for event in answered} == {
        ("OFFLINE", "offline:template", 0)
    }
    [verification] = [event for event in events if event["kind"] == "verification"]
    assert (verification["round"], verification["verified"], verification["failed_checks"]) == (0, True, [])
    completed = events[-1]
    assert completed["download_url"] == done["download_url"] and completed["file_id"] == done["file_id"]
    assert completed["download_link"].startswith(settings.public_api_url)
    assert (completed["verified"], completed["cost_usd_micros"]) == (True, 0)


async def test_a_scripted_provider_streams_tokens_costs_and_the_fix_round(
    temporal: Client, engine: AsyncEngine, ai_settings: Settings, fake_ai: FakeAIServer
) -> None:
    script(fake_ai, REQUIREMENTS, PLAN, BROKEN, FIXED, REVIEW)
    async with service(temporal, engine, openai_only(ai_settings)) as api:
        account = await sign_in(api, engine)
        prototype_id = await submit(api, account)
        events = await read_stream(api, account, prototype_id)

    assert [event["id"] for event in events] == list(range(1, len(events) + 1))
    assert outline(events) == [
        ("step_started", "requirements"),
        ("step_finished", "requirements"),
        ("step_started", "plan"),
        ("step_finished", "plan"),
        ("step_started", "code"),
        ("step_started", "tests"),
        ("verification", "code"),
        ("fix_round", "fix-1"),
        ("verification", "code"),
        ("step_finished", "code"),
        ("step_finished", "tests"),
        ("step_started", "review"),
        ("step_finished", "review"),
        ("step_started", "package"),
        ("step_finished", "package"),
        ("completed", None),
    ]
    calls = [event for event in events if event["kind"] in ("step_finished", "fix_round") and event["provider"]]
    assert len(calls) == 6
    for call in calls:
        assert (call["provider"], call["cost_usd_micros"]) == ("OPENAI", 8755)
        assert call["input_tokens"] > 0 and call["output_tokens"] > 0
    failing, passing = [event for event in events if event["kind"] == "verification"]
    assert (failing["round"], failing["verified"]) == (0, False)
    assert failing["failed_checks"] and failing["failed_checks"][0].startswith("compile calc.py")
    assert (passing["round"], passing["verified"], passing["failed_checks"]) == (1, True, [])
    assert events[-1]["cost_usd_micros"] == 6 * 8755 and events[-1]["verified"] is True


async def test_a_failed_pipeline_ends_the_stream_saying_why(
    temporal: Client, engine: AsyncEngine, ai_settings: Settings, fake_ai: FakeAIServer
) -> None:
    fake_ai.fail("openai", 400)
    async with service(temporal, engine, ai_settings) as api:
        account = await sign_in(api, engine)
        prototype_id = await submit(api, account)
        events = await read_stream(api, account, prototype_id)

    assert outline(events) == [("step_started", "requirements"), ("failed", "requirements")]
    assert "openai refused the request as invalid (HTTP 400)" in events[-1]["error"]
    assert (events[-1]["download_url"], events[-1]["file_id"]) == (None, None)


async def test_with_no_worker_to_ask_the_stored_row_ends_the_stream(
    temporal: Client, engine: AsyncEngine, settings: Settings
) -> None:
    """A finished prototype whose workflow no worker can answer for: the row says how it ended."""
    async with service(temporal, engine, settings) as api:
        account = await sign_in(api, engine)
        prototype_id = await submit(api, account)
        done = await finished(api, temporal, account, prototype_id)
    impatient = settings.model_copy(update={"temporal_rpc_timeout_seconds": 1.0})
    async with serve(create_app(impatient, temporal=temporal)) as api:
        events = await asyncio.wait_for(read_stream(api, account, prototype_id, last_event_id=3), 10)

    assert outline(events) == [("completed", None)]
    assert (events[0]["id"], events[0]["download_url"], events[0]["verified"]) == (4, done["download_url"], True)


async def test_a_resumed_stream_sends_only_the_events_after_the_last_id(
    temporal: Client, engine: AsyncEngine, settings: Settings
) -> None:
    async with service(temporal, engine, settings) as api:
        account = await sign_in(api, engine)
        prototype_id = await submit(api, account)
        everything = await read_stream(api, account, prototype_id)
        resumed = await read_stream(api, account, prototype_id, last_event_id=4)
        at_the_end = await read_stream(api, account, prototype_id, last_event_id=everything[-1]["id"])
        past_the_end = await asyncio.wait_for(read_stream(api, account, prototype_id, last_event_id=999), 10)

    assert unsigned(resumed) == unsigned(everything[4:])  # ids 5.. once each, none of 1..4 again
    # It had ended: the ending once more, so that EventSource's client knows to stop rather than reconnect for ever.
    assert unsigned(at_the_end) == unsigned(past_the_end) == unsigned(everything[-1:])


async def test_a_stream_closes_after_its_longest_duration_and_resumes_where_it_stopped(
    temporal: Client, engine: AsyncEngine, settings: Settings
) -> None:
    """No worker yet: nothing happens, and the stream still ends by itself; once the pipeline runs, a reconnect
    with the last id seen (none) gets everything."""
    short = settings.model_copy(update={"prototype_events_max_seconds": 1.0})
    async with serve(create_app(short, temporal=temporal)) as api:
        account = await sign_in(api, engine)
        prototype_id = await submit(api, account)
        assert await asyncio.wait_for(read_stream(api, account, prototype_id), 10) == []
        async with build_worker(temporal, settings, engine):
            await finished(api, temporal, account, prototype_id)
            events = await read_stream(api, account, prototype_id, last_event_id=0)
    assert outline(events) == offline_outline()


async def test_an_idle_stream_sends_keep_alive_comments_between_events(
    temporal: Client, engine: AsyncEngine, settings: Settings
) -> None:
    """No worker: no event for as long as the stream is open, yet the proxy in between sees bytes regularly."""
    idle = settings.model_copy(update={"prototype_events_keepalive_seconds": 0.2, "prototype_events_max_seconds": 1.5})
    async with serve(create_app(idle, temporal=temporal)) as api:
        account = await sign_in(api, engine)
        prototype_id = await submit(api, account)

        async def lines() -> list[str]:
            path = f"/api/prototypes/{prototype_id}/events"
            async with api.stream("GET", path, headers=account["headers"]) as response:
                assert response.status_code == 200
                return [line async for line in response.aiter_lines()]

        received = await asyncio.wait_for(lines(), 20)
    assert received and set(received) == {": keep-alive", ""}  # comments only: no event, nothing else
    assert received.count(": keep-alive") >= 2


async def test_someone_elses_prototype_is_not_found(temporal: Client, engine: AsyncEngine, settings: Settings) -> None:
    async with serve(create_app(settings, temporal=temporal)) as api:
        owner, other = await sign_in(api, engine), await sign_in(api, engine)
        prototype_id = await submit(api, owner)
        for path in (f"/api/prototypes/{prototype_id}/events", f"/api/prototypes/{uuid.uuid4()}/events"):
            refused = await api.get(path, headers=other["headers"])
            assert refused.status_code == 404, refused.text
            assert refused.json()["error"] == "Prototype not found"


async def test_an_open_stream_costs_one_request_of_the_daily_limit(
    temporal: Client, engine: AsyncEngine, settings: Settings
) -> None:
    """Three requests a day left once signed in: the stream stays open across the whole pipeline and spends one."""
    app = create_app(settings.model_copy(update={"rate_limit_default": "10/day"}), temporal=temporal)
    async with serve(app) as api:
        account = await sign_in(api, engine)
        prototype_id = await submit(api, account)
        limiter, identity = app.state.rate_limiter, f"user:{account['id']}"

        async def remaining() -> int:
            return int((await limiter.check("default", identity, count=False)).remaining)

        for _ in range(await remaining() - 3):  # signing in may have spent some: three left, whatever it took
            await limiter.check("default", identity)
        assert await remaining() == 3
        stream = asyncio.create_task(read_stream(api, account, prototype_id))

        async def counted() -> bool:
            return await remaining() == 2

        await eventually(counted, what="the stream to be counted")
        assert not stream.done()  # open, waiting for a worker
        async with build_worker(temporal, settings, engine):
            events = await asyncio.wait_for(stream, 60)
            assert events[-1]["kind"] == "completed"
            assert await remaining() == 2  # still one, however long it was open
            statuses = [
                (await api.get(f"/api/prototypes/{prototype_id}", headers=account["headers"])).status_code
                for _ in range(3)
            ]
    assert statuses == [200, 200, 429]


async def test_an_open_stream_holds_no_database_connection_while_it_waits(
    temporal: Client, engine: AsyncEngine, settings: Settings
) -> None:
    """With one pooled connection, two open streams on a prototype that makes no progress (no worker yet) do not
    hold it: another user is answered at once meanwhile, and both streams then deliver the whole pipeline."""
    one_connection = settings.model_copy(
        update={"database_pool_size": 1, "database_pool_overflow": 0, "database_pool_timeout_seconds": 1}
    )
    app = create_app(one_connection, temporal=temporal)
    async with serve(app) as api:
        owner, other = await sign_in(api, engine), await sign_in(api, engine)
        prototype_id = await submit(api, owner)
        # Each stream: one connection to sign in (a read), one session to check the owner; both given back.
        returned = ReturnedConnections(app.state.runtime.database)
        streams = [asyncio.create_task(read_stream(api, owner, prototype_id)) for _ in range(2)]

        async def both_streams_waiting() -> bool:
            return returned.count >= 4

        await eventually(both_streams_waiting, what="both streams to have checked the owner and let go")
        for _ in range(3):
            me = await asyncio.wait_for(api.get("/auth/me", headers=other["headers"]), 5)
            assert me.status_code == 200, me.text
        assert not any(stream.done() for stream in streams)  # the answers above came while both were open
        async with build_worker(temporal, settings, engine):
            delivered = await asyncio.wait_for(asyncio.gather(*streams), 60)
    assert [outline(events) for events in delivered] == [offline_outline(), offline_outline()]
