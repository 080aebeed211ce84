"""The `events_url` of a prototype's status: what a browser's EventSource opens, since it cannot send an
Authorization header. Its token opens that one prototype's stream, as its owner, for a few minutes; nothing
else; it never reaches a log line; and a cross-origin page may resume with Last-Event-ID."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import httpx
import pytest
from conftest import AppFactory
from helpers import bearer, serve
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from ai.support import service, sign_in
from ai.test_prototype_events import IDEA, offline_outline, outline, read_events, unsigned
from api.app import create_app
from services.security import sign_events_token
from settings import Settings

DEV_ORIGIN = "http://localhost:5173"


def token_of(events_url: str) -> str:
    return str(httpx.URL(events_url).params["token"])


async def submit(api: httpx.AsyncClient, account: dict[str, Any]) -> Any:
    accepted = await api.post("/api/ai/prototype", json=IDEA, headers=account["headers"])
    assert accepted.status_code == 202, accepted.text
    return accepted.json()


async def test_the_events_url_opens_the_stream_with_no_authorization_header_and_logs_no_token(
    temporal: Client, engine: AsyncEngine, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with service(temporal, engine, settings) as api:
        account = await sign_in(api, engine)
        accepted = await submit(api, account)
        from_submit = await read_events(api, accepted["events_url"])
        view = (await api.get(accepted["status_url"], headers=account["headers"])).json()
        from_status = await read_events(api, view["events_url"])
        resumed = await read_events(api, f"{view['events_url']}&last_event_id=4")  # a new EventSource resuming

    assert outline(from_submit) == outline(from_status) == offline_outline()
    assert unsigned(resumed) == unsigned(from_status[4:])
    assert view["events_url"].startswith(f"/api/prototypes/{accepted['prototype_id']}/events?token=")
    for url in (accepted["events_url"], view["events_url"]):
        assert token_of(url) not in caplog.text
    assert any("/api/prototypes/{prototype_id}/events" in record.getMessage() for record in caplog.records)


async def test_an_events_token_opens_its_own_prototypes_stream_and_nothing_else(
    temporal: Client, engine: AsyncEngine, settings: Settings
) -> None:
    short = settings.model_copy(update={"prototype_events_max_seconds": 0.5})  # no worker: the stream stays empty
    async with serve(create_app(short, temporal=temporal)) as api:
        account = await sign_in(api, engine)
        mine, other = await submit(api, account), await submit(api, account)
        token, prototype_id = token_of(mine["events_url"]), uuid.UUID(mine["prototype_id"])
        session = uuid.UUID(account["refresh_token"].partition(".")[0])
        opened = await api.get(mine["events_url"])
        assert (opened.status_code, opened.headers["cache-control"]) == (200, "no-cache")

        in_an_hour = int(time.time()) + 3600
        tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
        attempts = {
            "another prototype's stream": api.get(f"/api/prototypes/{other['prototype_id']}/events?token={token}"),
            "its status": api.get(f"/api/prototypes/{prototype_id}?token={token}"),
            "the list": api.get(f"/api/prototypes?token={token}"),
            "a download": api.get(f"/api/files/{prototype_id}?token={token}"),
            "as a bearer token": api.get(f"/api/prototypes/{prototype_id}/events", headers=bearer(token)),
            "tampered with": api.get(f"/api/prototypes/{prototype_id}/events?token={tampered}"),
            "expired": api.get(
                f"/api/prototypes/{prototype_id}/events",
                params={
                    "token": sign_events_token(settings, account["id"], session, prototype_id, int(time.time()) - 1)
                },
            ),
            "another secret's": api.get(
                f"/api/prototypes/{prototype_id}/events",
                params={
                    "token": sign_events_token(
                        settings.model_copy(update={"jwt_secret": SecretStr("another-secret-" + "x" * 40)}),
                        account["id"],
                        session,
                        prototype_id,
                        in_an_hour,
                    )
                },
            ),
            "another session's": api.get(
                f"/api/prototypes/{prototype_id}/events",
                params={"token": sign_events_token(settings, account["id"], uuid.uuid4(), prototype_id, in_an_hour)},
            ),
            "no one's": api.get(
                f"/api/prototypes/{prototype_id}/events",
                params={"token": sign_events_token(settings, uuid.uuid4(), session, prototype_id, in_an_hour)},
            ),
        }
        statuses = {what: (await attempt).status_code for what, attempt in attempts.items()}
    assert statuses == dict.fromkeys(attempts, 401)


async def test_a_stream_opened_by_its_token_counts_against_its_user(
    temporal: Client, engine: AsyncEngine, settings: Settings
) -> None:
    short = settings.model_copy(update={"prototype_events_max_seconds": 0.2})
    app = create_app(short, temporal=temporal)
    async with serve(app) as api:
        account = await sign_in(api, engine)
        accepted = await submit(api, account)

        async def remaining() -> int:
            identity = f"user:{account['id']}"
            return int((await app.state.rate_limiter.check("default", identity, count=False)).remaining)

        before = await remaining()
        assert (await api.get(accepted["events_url"])).status_code == 200
        assert await remaining() == before - 1


async def test_a_cross_origin_page_may_resume_with_last_event_id(make_app: AppFactory) -> None:
    """EventSource's reconnect sends Last-Event-ID, which no browser sends cross-origin without asking first."""
    async with serve(make_app(cors_origins=[DEV_ORIGIN])) as api:

        async def preflight(origin: str) -> httpx.Response:
            return await api.options(
                f"/api/prototypes/{uuid.uuid4()}/events",
                headers={
                    "Origin": origin,
                    "Access-Control-Request-Method": "GET",
                    "Access-Control-Request-Headers": "last-event-id",
                },
            )

        allowed, refused = await preflight(DEV_ORIGIN), await preflight("http://elsewhere.example")
    assert allowed.status_code == 200, allowed.text
    assert allowed.headers["access-control-allow-origin"] == DEV_ORIGIN
    assert "last-event-id" in allowed.headers["access-control-allow-headers"].lower()
    assert refused.status_code == 400


HOSTILE_TOKENS = [
    "",
    "ev2",
    "ev2....",
    "ev2.\x00.\x00.1.x",
    f"ev2.{uuid.uuid4()}.{uuid.uuid4()}.99999999999999999999999999.AAAA",
    "ev2." + "A" * 8000,
    "ev1.not.a.token",
    "\u202eev2.a.b.c.d",
    "eyJhbGciOiJub25lIn0.e30.",  # an unsigned JWT where a stream token belongs
]


@pytest.mark.parametrize("token", HOSTILE_TOKENS, ids=range(len(HOSTILE_TOKENS)))
async def test_a_hostile_events_token_is_401_never_a_500(make_app: AppFactory, token: str) -> None:
    async with serve(make_app()) as api:
        answered = await api.get(f"/api/prototypes/{uuid.uuid4()}/events", params={"token": token})
    assert answered.status_code in {401, 422}, answered.text  # 422: longer than any token signed here
    assert answered.headers["content-type"].startswith("application/json")


@pytest.mark.parametrize(
    ("header", "query"),
    [("-1", None), ("abc", None), ("1e9", None), (None, "-5"), (None, "x"), ("\t", None)],
)
async def test_a_hostile_resume_id_is_a_clear_4xx(
    temporal: Client, engine: AsyncEngine, settings: Settings, header: str | None, query: str | None
) -> None:
    """Last-Event-ID and ?last_event_id= come from the client: a negative or non-numeric one is refused with 422
    before any stream opens, never a 500 or a stream that starts from a wrong place (a huge one is past the end:
    the final event again)."""
    async with service(temporal, engine, settings) as api:
        account = await sign_in(api, engine)
        accepted = await submit(api, account)
        url = accepted["events_url"] + (f"&last_event_id={query}" if query is not None else "")
        headers = {"Last-Event-ID": header} if header is not None else {}
        answered = await api.get(url, headers=headers)
    assert answered.status_code == 422, answered.text
