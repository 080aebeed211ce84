"""Stubs of the AI providers' activities (chat and transcription, per provider) and of the AI call record, and the
chat workflow's input. A provider answers, fails retryably (down) or refuses, as `Outside` says; a step's calls can
be made to answer only together (`Outside.together`), to prove the workflow asks them at the same time."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.ai.errors import AIFailure
from models.enums import AIProvider
from models.messages.ai import (
    AICallPolicy,
    AICallRecord,
    ChatInput,
    ModelCall,
    ModelReply,
    Transcript,
    TranscriptionCall,
)
from stubs.base import Stubs

STUB_MODEL = "stub-model"
STUB_COST_MICROS = 1_000

FAST_AI = AICallPolicy(
    timeout_seconds=30, retry_initial_interval_seconds=1, retry_maximum_interval_seconds=2, retry_maximum_attempts=3
)
"""The AI call policy of every stubbed workflow's input: short retries, the time-skipping server skips them."""


class AIStubs(Stubs):
    def all(self) -> list[Callable[..., Any]]:
        return [
            self.offline_chat,
            self.ollama_chat,
            self.openai_chat,
            self.azure_chat,
            self.openai_transcribe,
            self.azure_transcribe,
            self.record_ai_call,
        ]

    async def _answer(self, tier: AIProvider, argument: ModelCall | TranscriptionCall) -> None:
        await self._note(argument)
        if tier in self.outside.providers_refusing:
            raise ApplicationError(
                f"{tier.lower()} refused: content policy", type=AIFailure.CONTENT_REFUSED, non_retryable=True
            )
        if tier in self.outside.providers_down:
            raise ApplicationError(f"{tier.lower()} answered 503", type=AIFailure.PROVIDER_ERROR)

    async def _reply(self, tier: AIProvider, call: ModelCall) -> ModelReply:
        await self._answer(tier, call)
        if call.step in self.outside.together:
            await self.outside.meet(call.step)
        if call.step in self.outside.steps_refusing:
            raise ApplicationError(
                f"{call.step} refused: content policy", type=AIFailure.CONTENT_REFUSED, non_retryable=True
            )
        return ModelReply(
            tier=tier,
            text=self.outside.answers.get(call.step or "", f"{call.step or 'chat'} answer from {tier.lower()}"),
            model_used=STUB_MODEL,
            input_tokens=10,
            output_tokens=20,
            latency_ms=5,
            cost_usd_micros=STUB_COST_MICROS,
        )

    async def _transcript(self, tier: AIProvider, call: TranscriptionCall) -> Transcript:
        await self._answer(tier, call)
        return Transcript(
            tier=tier,
            text="A to-do list app with reminders",
            model_used=STUB_MODEL,
            audio_milliseconds=3000,
            latency_ms=5,
            cost_usd_micros=STUB_COST_MICROS,
        )

    @activity.defn(name="offline_chat")
    async def offline_chat(self, call: ModelCall) -> ModelReply:
        return await self._reply(AIProvider.OFFLINE, call)

    @activity.defn(name="ollama_chat")
    async def ollama_chat(self, call: ModelCall) -> ModelReply:
        return await self._reply(AIProvider.OLLAMA, call)

    @activity.defn(name="openai_chat")
    async def openai_chat(self, call: ModelCall) -> ModelReply:
        return await self._reply(AIProvider.OPENAI, call)

    @activity.defn(name="azure_chat")
    async def azure_chat(self, call: ModelCall) -> ModelReply:
        return await self._reply(AIProvider.AZURE, call)

    @activity.defn(name="openai_transcribe")
    async def openai_transcribe(self, call: TranscriptionCall) -> Transcript:
        return await self._transcript(AIProvider.OPENAI, call)

    @activity.defn(name="azure_transcribe")
    async def azure_transcribe(self, call: TranscriptionCall) -> Transcript:
        return await self._transcript(AIProvider.AZURE, call)

    @activity.defn(name="record_ai_call")
    async def record_ai_call(self, record: AICallRecord) -> uuid.UUID:
        await self._note(record)
        return uuid.uuid5(uuid.NAMESPACE_URL, record.call_key)


def chat_input(providers: Sequence[AIProvider] = (AIProvider.OPENAI,)) -> ChatInput:
    return ChatInput(
        chat_id=uuid.uuid4(),
        user_id=uuid.uuid4(),
        providers=list(providers),
        call=ModelCall(prompt="What stack fits a to-do app?"),
        policy=FAST_AI,
    )
