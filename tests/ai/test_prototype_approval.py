"""POST /api/prototypes/{id}/approval end to end: a prototype submitted with review_requirements waits after the
requirements (AWAITING_APPROVAL, no later call made), goes on with the customer's edited text, is cancelled by
a refusal; an answer when none is awaited is a 409, and someone else's prototype a 404."""

from __future__ import annotations

from typing import Any

import httpx
from fakes.ai_server import FakeAIServer
from helpers import eventually
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from ai.support import calls_of, finished, service, sign_in
from settings import Settings

IDEA = {"idea": "A command-line calculator that adds two numbers.", "review_requirements": True}
EDITED = "# Requirements\n\nAdd and subtract two numbers."


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
