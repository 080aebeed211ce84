"""AIResponse rows: written once per call key, whatever a model answers."""

from __future__ import annotations

import uuid

import httpx
from helpers import register_and_login
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select

from activities.ai.records import AIRecordActivities
from models.db import open_session
from models.enums import AIProvider
from models.messages.ai import AICallRecord, ModelReply
from models.tables import AIResponse


async def test_a_reply_with_nul_bytes_is_stored_once(api: httpx.AsyncClient, engine: AsyncEngine) -> None:
    user_id = uuid.UUID((await register_and_login(api))["user"]["id"])
    reply = ModelReply(
        tier=AIProvider.OPENAI,
        text="code\x00with a NUL",
        model_used="gpt-4o-mini",
        input_tokens=3,
        output_tokens=4,
        latency_ms=5,
        cost_usd_micros=6,
    )
    record = AICallRecord(call_key=f"test-{uuid.uuid4()}", user_id=user_id, prompt="say\x00it", reply=reply)
    activities = AIRecordActivities(engine)
    first = await activities.record_ai_call(record)
    again = await activities.record_ai_call(record)
    assert first == again
    async with open_session(engine) as db:
        rows = (await db.exec(select(AIResponse).where(AIResponse.call_key == record.call_key))).all()
    assert [(row.prompt, row.response) for row in rows] == [("say\ufffdit", "code\ufffdwith a NUL")]
