"""An Idempotency-Key on the AI routes: the same request replays the first result, a
different request under a used key is a 422 that says so, and the first result stands."""

from __future__ import annotations

import uuid

from fakes.ai_server import FakeAIServer
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select
from temporalio.client import Client

from ai.support import service, sign_in
from ai.test_chat import QUESTION
from ai.test_prototype import IDEA
from ai.test_voice import WEBM, send_voice
from models.db import open_session
from models.tables import Prototype
from services.idempotency import KEY_REUSED
from settings import Settings


def unlimited(settings: Settings) -> Settings:
    """The AI limit (2 a day) is not what these tests are about."""
    return settings.model_copy(update={"rate_limit_enabled": False})


def with_key(account: dict[str, object], key: str) -> dict[str, object]:
    return {**account, "headers": {**account["headers"], "Idempotency-Key": key}}  # type: ignore[dict-item]


async def test_a_chat_key_reused_for_another_question_is_refused(
    temporal: Client, engine: AsyncEngine, ai_settings: Settings, fake_ai: FakeAIServer
) -> None:
    async with service(temporal, engine, unlimited(ai_settings)) as api:
        account = with_key(await sign_in(api, engine), "chat-key")
        first = await api.post("/api/ai/chat", json=QUESTION, headers=account["headers"])
        other = await api.post("/api/ai/chat", json={"message": "Something else"}, headers=account["headers"])
        again = await api.post("/api/ai/chat", json=QUESTION, headers=account["headers"])
    assert first.status_code == 200, first.text
    assert (other.status_code, other.json()["error"]) == (422, KEY_REUSED)
    assert again.json() == first.json()
    assert len(fake_ai.calls) == 1


async def test_a_prototype_key_reused_for_another_idea_is_refused(
    temporal: Client, engine: AsyncEngine, settings: Settings
) -> None:
    async with service(temporal, engine, unlimited(settings)) as api:
        account = await sign_in(api, engine)
        keyed = with_key(account, "prototype-key")
        first = await api.post("/api/ai/prototype", json=IDEA, headers=keyed["headers"])
        other = await api.post("/api/ai/prototype", json={"idea": "A different app"}, headers=keyed["headers"])
        again = await api.post("/api/ai/prototype", json=IDEA, headers=keyed["headers"])
        stranger = with_key(await sign_in(api, engine), "prototype-key")  # keys are each user's own
        theirs = await api.post("/api/ai/prototype", json={"idea": "A different app"}, headers=stranger["headers"])
    assert first.status_code == 202, first.text
    assert (other.status_code, other.json()["error"]) == (422, KEY_REUSED)
    assert again.json()["prototype_id"] == first.json()["prototype_id"]
    assert theirs.status_code == 202 and theirs.json()["prototype_id"] != first.json()["prototype_id"]
    async with open_session(engine) as db:
        mine = (await db.exec(select(Prototype).where(Prototype.user_id == account["id"]))).all()
    assert [prototype.idea for prototype in mine] == [IDEA["idea"]]


async def test_a_voice_key_reused_for_another_message_is_refused(
    temporal: Client, engine: AsyncEngine, ai_settings: Settings, fake_ai: FakeAIServer
) -> None:
    async with service(temporal, engine, unlimited(ai_settings)) as api:
        account = with_key(await sign_in(api, engine), f"voice-{uuid.uuid4().hex}")
        first = await send_voice(api, account)
        other_audio = await send_voice(api, account, content=WEBM + b"another message")
        other_language = await send_voice(api, account, query="?language=cs")
        typed = await api.post("/api/ai/prototype", json=IDEA, headers=account["headers"])  # type: ignore[arg-type]
        again = await send_voice(api, account)
    assert first.status_code == 202, first.text
    for refused in (other_audio, other_language, typed):
        assert (refused.status_code, refused.json()["error"]) == (422, KEY_REUSED)
    assert again.status_code == 202 and again.json()["prototype_id"] == first.json()["prototype_id"]
