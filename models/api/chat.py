"""Requests and responses of /api/ai/chat and /api/chats."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field

from models.api.common import AIProviderName, Strict, plain_text


class ChatRequest(Strict):
    """The seed's AIPromptSchema."""

    message: Annotated[str, Field(min_length=1, max_length=10_000), AfterValidator(plain_text)]
    model: AIProviderName | None = Field(
        default=None, description="Preferred provider, tried first; otherwise your service tier decides"
    )
    temperature: float = Field(default=0.7, ge=0, le=2)
    max_tokens: int = Field(default=2000, ge=1, le=4000)


class ChatResponse(BaseModel):
    """The seed's AIResponseSchema; `cost_usd_micros` is the stored truth, `cost_usd` is derived from it."""

    success: Literal[True] = True
    chat_id: uuid.UUID
    response: str
    model_used: str = Field(examples=["openai:gpt-4o-mini", "offline:template"])
    template: bool = Field(description="True when the offline template answered: no model was asked")
    tokens_used: int
    processing_time_ms: int
    cost_usd: float
    cost_usd_micros: int


class ChatAccepted(BaseModel):
    """The answer took longer than the API waits: poll `status_url` (polls do not count against the AI limit)."""

    success: Literal[True] = True
    chat_id: uuid.UUID
    status: Literal["running"] = "running"
    status_url: str


class ChatStatus(BaseModel):
    success: Literal[True] = True
    chat_id: uuid.UUID
    status: Literal["running", "completed", "failed"]
    result: ChatResponse | None = None
    error: str | None = None
