"""OpenAI: chat completions and Whisper transcription through `openai.AsyncOpenAI`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from temporalio import activity

from activities.ai.openai_compatible import AudioStore, Deployment, OpenAICompatible
from models.ai_prices import PriceTable
from models.enums import AIProvider
from models.messages.ai import ModelCall, ModelReply, Transcript, TranscriptionCall
from settings import Settings

if TYPE_CHECKING:
    import openai


def openai_client(settings: Settings) -> openai.AsyncOpenAI:
    """The SDK's own retries are off: Temporal retries, so each attempt shows in the workflow's history."""
    if settings.openai_api_key is None:
        raise ValueError("OPENAI_API_KEY is not set")
    import openai  # here, not at the top: the API imports this module (for the activity's name), not the SDK

    return openai.AsyncOpenAI(
        api_key=settings.openai_api_key.get_secret_value(),
        base_url=settings.openai_base_url,
        max_retries=0,
        timeout=settings.ai_request_timeout_seconds,
    )


class OpenAIActivities(OpenAICompatible):
    def __init__(self, settings: Settings, prices: PriceTable, audio: AudioStore | None = None) -> None:
        super().__init__(
            AIProvider.OPENAI,
            openai_client(settings),
            prices,
            settings,
            chat=Deployment(settings.openai_chat_model, priced_as=settings.openai_chat_model),
            transcription=Deployment(settings.openai_transcription_model, settings.openai_transcription_model),
            audio=audio,
        )

    @activity.defn(name="openai_chat")
    async def chat(self, call: ModelCall) -> ModelReply:
        return await self.complete(call)

    @activity.defn(name="openai_transcribe")
    async def transcribe(self, call: TranscriptionCall) -> Transcript:
        return await self.transcribe_audio(call)
