"""POST /api/prototypes/{id}/approval end to end: a prototype submitted with review_requirements waits after the
requirements (AWAITING_APPROVAL, no later call made) and shows them (its status, the progress stream and an
email), goes on with the customer's edited text, is cancelled by a refusal; an answer when none is awaited is a
409, and someone else's prototype a 404."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import sqlalchemy as sa
from fakes.ai_server import FakeAIServer
from helpers import eventually, serve
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col
from temporalio.client import Client

from ai.support import body_of, calls_of, finished, outbox, service, sign_in
from api.app import create_app
from models.db import open_session
from models.messages.prototypes import ON_APPROVE, ON_DECLINE, ON_EDIT
from models.prompts import PIPELINE
from models.tables import Prototype
from settings import Settings
from worker import build_worker

IDEA = {"idea": "A command-line calculator that adds two numbers.", "review_requirements": True}
EDITED = "# Requirements\n\nAdd and subtract two numbers."
GENERATED = "# Requirements\n\n- Add two numbers given on the command line.\n- <b>Print</b> the sum."


def openai_only(settings: Settings) -> Settings:
    return settings.model_copy(update={"ai_fallback_order": ["openai", "azure", "ollama"]})


async def awaiting_approval(api: httpx.AsyncClient, account: dict[str, Any]) -> str:
    accepted = await api.post("/api/ai/prototype", json=IDEA, headers=account["headers"])
    assert accepted.status_code == 202, accepted.text
    prototype_id = str(accepted.json()["prototype_id"])

    async def paused() -> dict[str, Any] | None:
        view = (await api.get(f"/api/prototypes/{prototype_id}", headers=account["headers"])).json()
        return view if view["status"] == "AWAITING_APPROVAL" else None

    await eventually(paused, within=30, what="the prototype to wait for approval")
    return prototype_id


async def approval_event(api: httpx.AsyncClient, account: dict[str, Any], prototype_id: str) -> dict[str, Any]:
    """The progress stream's `approval_needed` event: the stream is read until it closes (PROTOTYPE_EVENTS_MAX_SECONDS,
    short here), since it stays open while the prototype waits."""
    response = await api.get(f"/api/prototypes/{prototype_id}/events", headers=account["headers"])
    assert response.status_code == 200, response.text
    events = [json.loads(line.removeprefix("data:")) for line in response.text.splitlines() if line.startswith("data:")]
    [needed] = [event for event in events if event["kind"] == "approval_needed"]
    return dict(needed)


async def test_the_requirements_to_approve_are_in_the_status_the_stream_and_an_email(
    temporal: Client, engine: AsyncEngine, ai_settings: Settings, fake_ai: FakeAIServer
) -> None:
    fake_ai.answer_to(PIPELINE[0].role, GENERATED)
    short_streams = openai_only(ai_settings).model_copy(update={"prototype_events_max_seconds": 1.5})
    async with service(temporal, engine, short_streams) as api:
        account = await sign_in(api, engine)
        prototype_id = await awaiting_approval(api, account)
        view = (await api.get(f"/api/prototypes/{prototype_id}", headers=account["headers"])).json()
        event = await approval_event(api, account, prototype_id)

        async def asking() -> str | None:
            bodies = [body_of(email) for email in outbox(ai_settings)]
            return next((body for body in bodies if "/approval" in body), None)

        email = await eventually(asking, what="the email asking for approval")
        await api.post(f"/api/prototypes/{prototype_id}/approval", json={"approve": False}, headers=account["headers"])

    approval = view["approval"]
    assert approval["requirements"] == GENERATED  # as generated: data, passed on as it is
    assert (approval["step"], approval["truncated"]) == ("requirements", False)
    assert approval["approval_url"] == f"/api/prototypes/{prototype_id}/approval"
    assert (approval["on_approve"], approval["on_edit"], approval["on_decline"]) == (ON_APPROVE, ON_EDIT, ON_DECLINE)
    assert approval["answer_by"] is not None
    assert event["approval"] == approval
    assert all(f"> {line}".rstrip() in email for line in GENERATED.split("\n"))
    assert ON_APPROVE in email and ON_EDIT in email


async def test_approved_with_edited_requirements_the_plan_reads_them(
    temporal: Client, engine: AsyncEngine, ai_settings: Settings, fake_ai: FakeAIServer
) -> None:
    async with service(temporal, engine, openai_only(ai_settings)) as api:
        account = await sign_in(api, engine)
        prototype_id = await awaiting_approval(api, account)
        assert [row.step for row in await calls_of(engine, prototype_id)] == ["requirements"]
        assert len(fake_ai.calls) == 1  # nothing after the requirements is spent before approval

        approved = await api.post(
            f"/api/prototypes/{prototype_id}/approval",
            json={"approve": True, "edited_requirements": EDITED},
            headers=account["headers"],
        )
        assert approved.status_code == 200, approved.text
        assert approved.json()["status"] == "RUNNING"
        done = await finished(api, temporal, account, prototype_id)
        again = await api.post(
            f"/api/prototypes/{prototype_id}/approval", json={"approve": True}, headers=account["headers"]
        )

    assert done["status"] == "COMPLETED", done
    assert EDITED in fake_ai.calls_to("openai")[1].prompt  # the plan step's prompt
    assert again.status_code == 409, again.text


async def test_declined_requirements_cancel_the_prototype(
    temporal: Client, engine: AsyncEngine, ai_settings: Settings, fake_ai: FakeAIServer
) -> None:
    async with service(temporal, engine, openai_only(ai_settings)) as api:
        owner, other = await sign_in(api, engine), await sign_in(api, engine)
        prototype_id = await awaiting_approval(api, owner)
        url = f"/api/prototypes/{prototype_id}/approval"
        someone_else = await api.post(url, json={"approve": False}, headers=other["headers"])
        declined = await api.post(url, json={"approve": False}, headers=owner["headers"])
        view = (await api.get(f"/api/prototypes/{prototype_id}", headers=owner["headers"])).json()

    assert someone_else.status_code == 404, someone_else.text
    assert declined.status_code == 200, declined.text
    assert declined.json()["status"] == view["status"] == "CANCELLED"
    assert view["error"] == "You declined the requirements"
    assert len(fake_ai.calls) == 1


async def test_with_no_worker_to_ask_the_status_shows_the_recorded_requirements(
    temporal: Client, engine: AsyncEngine, ai_settings: Settings, fake_ai: FakeAIServer
) -> None:
    fake_ai.answer_to(PIPELINE[0].role, GENERATED)
    quick = openai_only(ai_settings).model_copy(update={"temporal_rpc_timeout_seconds": 1.0})
    async with serve(create_app(quick, temporal=temporal)) as api:
        account = await sign_in(api, engine)
        async with build_worker(temporal, quick, engine):
            prototype_id = await awaiting_approval(api, account)
        view = (await api.get(f"/api/prototypes/{prototype_id}", headers=account["headers"])).json()

    assert view["status"] == "AWAITING_APPROVAL"
    assert view["approval"]["requirements"] == GENERATED  # from the recorded call: the workflow cannot be asked
    assert view["approval"]["answer_by"] is None


async def test_an_approval_is_taken_while_the_row_still_says_running(
    temporal: Client, engine: AsyncEngine, ai_settings: Settings, fake_ai: FakeAIServer
) -> None:
    """The live status says AWAITING_APPROVAL a moment before the workflow's activity writes the row: an approval
    in that moment is the workflow's to decide, not a 409 read off the row."""
    async with service(temporal, engine, openai_only(ai_settings)) as api:
        account = await sign_in(api, engine)
        prototype_id = await awaiting_approval(api, account)
        async with open_session(engine) as db:  # the row as it is just before the activity writes it
            await db.exec(  # type: ignore[call-overload]
                sa.update(Prototype).where(col(Prototype.id) == uuid.UUID(prototype_id)).values(status="RUNNING")
            )
            await db.commit()
        approved = await api.post(
            f"/api/prototypes/{prototype_id}/approval", json={"approve": True}, headers=account["headers"]
        )
        assert approved.status_code == 200, approved.text
        assert (await finished(api, temporal, account, prototype_id))["status"] == "COMPLETED"
