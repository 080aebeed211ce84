"""What OpenAI and Azure OpenAI share: both are the `openai` SDK, with the same calls, answers and errors.

The provider modules (openai.py, azure.py) only build their client and name their activities.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol

from temporalio.exceptions import ApplicationError

from activities.ai import elapsed_ms
from activities.ai.errors import AIFailure, content_refused, http_failure, provider_name, retry_after, unreachable
from models.ai_prices import PriceTable
from models.enums import AIProvider
from models.messages.ai import ModelCall, ModelReply, Transcript, TranscriptionCall
from settings import Settings

if TYPE_CHECKING:
    import openai


class AudioStore(Protocol):
    """Where uploaded audio waits (activities.storage.Storage fits): Temporal carries keys, not bytes."""

    async def open(self, key: str) -> AsyncIterator[bytes]: ...


@dataclass(frozen=True)
class Deployment:
    """What to send as `model` (OpenAI: the model; Azure: the deployment) and the model it is priced as."""

    name: str
    priced_as: str


class OpenAICompatible:
    def __init__(
        self,
        provider: AIProvider,
        client: openai.AsyncOpenAI,
        prices: PriceTable,
        settings: Settings,
        *,
        chat: Deployment,
        transcription: Deployment | None,
        audio: AudioStore | None,
    ) -> None:
        self.provider = provider
        self.client = client
        self.chat_deployment = chat
        self.chat_price = prices.chat_price(provider, chat.priced_as)
        self.transcription_deployment = transcription
        self.transcription_price = (
            prices.transcription_price(provider, transcription.priced_as) if transcription is not None else None
        )
        self.audio = audio
        self.transcription_timeout = timedelta(seconds=settings.ai_transcription_timeout_seconds)
        self.max_retry_delay = timedelta(seconds=settings.ai_retry_maximum_interval_seconds)

    async def complete(self, call: ModelCall) -> ModelReply:
        import openai  # loaded by the client already; imported here so the API that names these activities never is

        messages: list[dict[str, str]] = [{"role": "system", "content": call.system}] if call.system else []
        messages.append({"role": "user", "content": call.prompt})
        started = time.monotonic()
        try:
            response = await self.client.chat.completions.create(
                model=self.chat_deployment.name,
                messages=messages,  # type: ignore[arg-type]
                temperature=call.temperature,
                max_tokens=call.max_tokens,
            )
        except openai.OpenAIError as err:
            raise self._failure(err) from err
        latency_ms = elapsed_ms(started)
        if not response.choices:
            raise ApplicationError(
                f"{provider_name(self.provider)} answered without a choice", type=AIFailure.PROVIDER_ERROR
            )
        choice = response.choices[0]
        if choice.finish_reason == "content_filter":
            raise content_refused(self.provider, "the answer was withheld (finish_reason=content_filter)")
        usage = response.usage
        input_tokens = usage.prompt_tokens if usage else 0
        output_tokens = usage.completion_tokens if usage else 0
        details = usage.prompt_tokens_details if usage else None
        cached_tokens = (details.cached_tokens or 0) if details else 0
        return ModelReply(
            tier=self.provider,
            text=choice.message.content or "",
            model_used=f"{provider_name(self.provider)}:{response.model or self.chat_deployment.priced_as}",
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cached_input_tokens=cached_tokens,
            latency_ms=latency_ms,
            cost_usd_micros=self.chat_price.cost_micros(input_tokens, output_tokens, cached_tokens),
        )

    async def transcribe_audio(self, call: TranscriptionCall) -> Transcript:
        import openai

        if self.transcription_deployment is None or self.transcription_price is None or self.audio is None:
            raise ApplicationError(
                f"transcription is not configured for {provider_name(self.provider)}",
                type=AIFailure.NOT_CONFIGURED,
                non_retryable=True,
            )
        try:
            chunks = await self.audio.open(call.audio_key)
            audio = b"".join([chunk async for chunk in chunks])
        except FileNotFoundError as err:
            raise ApplicationError(
                f"audio {call.audio_key!r} is no longer in storage", type=AIFailure.REQUEST_REJECTED, non_retryable=True
            ) from err
        started = time.monotonic()
        try:
            result = await self.client.audio.transcriptions.create(
                model=self.transcription_deployment.name,
                file=(call.filename, audio, call.content_type),
                response_format="verbose_json",
                language=call.language or openai.omit,
                timeout=self.transcription_timeout.total_seconds(),
            )
        except openai.OpenAIError as err:
            raise self._failure(err) from err
        milliseconds = round((result.duration or 0) * 1000)
        return Transcript(
            tier=self.provider,
            text=result.text,
            model_used=f"{provider_name(self.provider)}:{self.transcription_deployment.priced_as}",
            audio_milliseconds=milliseconds,
            latency_ms=elapsed_ms(started),
            cost_usd_micros=self.transcription_price.cost_micros(Decimal(milliseconds) / 1000),
        )

    def _failure(self, err: openai.OpenAIError) -> ApplicationError:
        import openai

        if isinstance(err, openai.APIStatusError):
            wait = retry_after(err.response.headers.get("retry-after"), self.max_retry_delay)
            return http_failure(self.provider, err.status_code, err.message, code=err.code, retry_after=wait)
        if isinstance(err, openai.APIConnectionError):  # timeouts included
            return unreachable(self.provider, err)
        return ApplicationError(f"{provider_name(self.provider)}: {err}", type=AIFailure.PROVIDER_ERROR)
