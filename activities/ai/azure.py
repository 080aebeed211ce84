"""Azure OpenAI (EU-resident by default): chat and Whisper deployments through `openai.AsyncAzureOpenAI`."""

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


def azure_client(settings: Settings) -> openai.AsyncAzureOpenAI:
    """Requests go to {endpoint}/openai/deployments/{deployment}/...?api-version=...; SDK retries off."""
    if settings.azure_openai_api_key is None or not settings.azure_openai_endpoint:
        raise ValueError("AZURE_OPENAI_ENDPOINT and AZURE_OPENAI_API_KEY must both be set")
    import openai  # here, not at the top: the API imports this module (for the activity's name), not the SDK

    return openai.AsyncAzureOpenAI(
        azure_endpoint=settings.azure_openai_endpoint,
        api_key=settings.azure_openai_api_key.get_secret_value(),
        api_version=settings.azure_openai_api_version,
        max_retries=0,
        timeout=settings.ai_request_timeout_seconds,
    )


class AzureActivities(OpenAICompatible):
    def __init__(self, settings: Settings, prices: PriceTable, audio: AudioStore | None = None) -> None:
        whisper = settings.azure_openai_transcription_deployment
        super().__init__(
            AIProvider.AZURE,
            azure_client(settings),
            prices,
            settings,
            chat=Deployment(settings.azure_openai_chat_deployment, priced_as=settings.azure_openai_chat_model),
            transcription=Deployment(whisper, settings.azure_openai_transcription_model) if whisper else None,
            audio=audio,
        )

    @activity.defn(name="azure_chat")
    async def chat(self, call: ModelCall) -> ModelReply:
        return await self.complete(call)

    @activity.defn(name="azure_transcribe")
    async def transcribe(self, call: TranscriptionCall) -> Transcript:
        return await self.transcribe_audio(call)
