"""Ollama (self-hosted): chat through `ollama.AsyncClient`, host and model from settings."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.ai import elapsed_ms
from activities.ai.errors import AIFailure, http_failure, unreachable
from models.ai_prices import PriceTable
from models.enums import AIProvider
from models.messages.ai import ModelCall, ModelReply
from settings import Settings

if TYPE_CHECKING:
    import ollama


def ollama_client(settings: Settings) -> ollama.AsyncClient:
    if not settings.ollama_host:
        raise ValueError("OLLAMA_HOST is not set")
    import ollama  # here, not at the top: the API imports this module (for the activity's name), not the SDK

    return ollama.AsyncClient(host=settings.ollama_host, timeout=settings.ai_request_timeout_seconds)


class OllamaActivities:
    def __init__(self, settings: Settings, prices: PriceTable) -> None:
        self.client = ollama_client(settings)
        self.model = settings.ollama_model
        self.price = prices.chat_price(AIProvider.OLLAMA, self.model)

    @activity.defn(name="ollama_chat")
    async def chat(self, call: ModelCall) -> ModelReply:
        import httpx  # here too: the API imports this module for the activity's name, and needs neither
        import ollama

        messages = [{"role": "system", "content": call.system}] if call.system else []
        messages.append({"role": "user", "content": call.prompt})
        started = time.monotonic()
        try:
            response = await self.client.chat(
                model=self.model,
                messages=messages,
                options={"temperature": call.temperature, "num_predict": call.max_tokens},
            )
        except ollama.ResponseError as err:
            if err.status_code < 100:  # an error inside a 200 answer: the server's trouble, worth a retry
                raise ApplicationError(f"ollama failed: {err.error}", type=AIFailure.PROVIDER_ERROR) from err
            raise http_failure(AIProvider.OLLAMA, err.status_code, str(err.error)) from err
        except (ConnectionError, httpx.TransportError) as err:  # refused, reset, timed out
            raise unreachable(AIProvider.OLLAMA, err) from err
        input_tokens = response.prompt_eval_count or 0
        output_tokens = response.eval_count or 0
        return ModelReply(
            tier=AIProvider.OLLAMA,
            text=response.message.content or "",
            model_used=f"ollama:{response.model or self.model}",
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            latency_ms=elapsed_ms(started),
            cost_usd_micros=self.price.cost_micros(input_tokens, output_tokens),
        )
