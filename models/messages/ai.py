"""Model calls as they cross Temporal: providers, policies, replies, transcripts, the rows they leave."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, Field

from models.enums import AIProvider


class AICallPolicy(BaseModel):
    """How long one provider gets per attempt, and how Temporal retries it before the next provider."""

    timeout_seconds: float = Field(gt=0)
    retry_initial_interval_seconds: float = Field(gt=0)
    retry_maximum_interval_seconds: float = Field(gt=0)
    retry_maximum_attempts: int = Field(ge=1)


class ModelCall(BaseModel):
    prompt: str
    temperature: float = 0.7
    max_tokens: int = 2000
    system: str | None = None
    step: str | None = Field(
        default=None, description="The prototype step asking (e.g. 'code'), so the offline template answers in kind"
    )
    idea: str | None = Field(default=None, description="A prototype step's idea, for the offline template's page")
    requirements: str | None = Field(
        default=None, description="A prototype step's requirements, whose features the offline template's page lists"
    )


class ModelReply(BaseModel):
    """One model's answer. `model_used` says who answered: "offline:template" is no model at all."""

    tier: AIProvider  # the provider; the field keeps its name, which recorded payloads carry
    text: str
    model_used: str
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int = Field(default=0, description="Of input_tokens, those the provider served from cache")
    latency_ms: int
    cost_usd_micros: int


class ChatInput(BaseModel):
    chat_id: uuid.UUID
    user_id: uuid.UUID
    providers: list[AIProvider] = Field(min_length=1, description="Tried in order; chosen by workflows.ai")
    call: ModelCall
    policy: AICallPolicy


class ChatOutcome(BaseModel):
    chat_id: uuid.UUID
    reply: ModelReply
    providers_tried: list[AIProvider]


class ChatProgress(BaseModel):
    chat_id: uuid.UUID | None
    trying: AIProvider | None
    providers_tried: list[AIProvider]
    answered: bool


class AICallRecord(BaseModel):
    """One AIResponse row; `call_key` makes writing it idempotent."""

    call_key: str = Field(max_length=200)
    user_id: uuid.UUID
    prototype_id: uuid.UUID | None = None
    step: str | None = None
    prompt: str
    reply: ModelReply


class TranscriptionCall(BaseModel):
    """Audio already in file storage: Temporal carries the key, never the bytes."""

    audio_key: str
    filename: str
    content_type: str
    language: str | None = Field(default=None, description="ISO-639-1 hint, e.g. 'cs'")


class Transcript(BaseModel):
    tier: AIProvider  # the provider; the field keeps its name, which recorded payloads carry
    text: str
    model_used: str
    audio_milliseconds: int
    latency_ms: int
    cost_usd_micros: int
