"""The AIResponse rows: one per call to a model, written once however often Temporal retries the write."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity

from models.db import insert_if_absent, open_session
from models.messages.ai import AICallRecord
from models.tables import AIResponse
from models.types import utcnow
from observability import metrics

_ROW_ID_NAMESPACE = uuid.UUID("5d0c3a8e-2b1f-4e7a-9c64-0f6f3b1d2a77")


def storable(text: str) -> str:
    """PostgreSQL text cannot hold NUL, and a model may answer with one: without this the write would fail on
    every retry and hold the workflow up for ever."""
    return text.replace("\x00", "\ufffd")


class AIRecordActivities:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @activity.defn
    async def record_ai_call(self, record: AICallRecord) -> uuid.UUID:
        """Insert-if-absent on the unique `call_key`; the row id is derived from it, so a retry finds the same row."""
        row_id = uuid.uuid5(_ROW_ID_NAMESPACE, record.call_key)
        reply = record.reply
        async with open_session(self.engine) as db:
            inserted = await insert_if_absent(
                db,
                AIResponse,
                {
                    "id": row_id,
                    "call_key": record.call_key,
                    "user_id": record.user_id,
                    "prototype_id": record.prototype_id,
                    "step": record.step,
                    "prompt": storable(record.prompt),
                    "response": storable(reply.text),
                    "tier": reply.tier,
                    "model_used": reply.model_used[:128],
                    "input_tokens": reply.input_tokens,
                    "output_tokens": reply.output_tokens,
                    "cost_usd_micros": reply.cost_usd_micros,
                    "processing_time_ms": reply.latency_ms,
                    "created_at": utcnow(),
                },
            )
            await db.commit()
        if inserted:
            provider = reply.tier.lower()
            metrics.ai_tokens.labels(provider, "input").inc(reply.input_tokens)
            metrics.ai_tokens.labels(provider, "output").inc(reply.output_tokens)
            metrics.ai_cost_usd_micros.labels(provider).inc(reply.cost_usd_micros)
        return row_id
