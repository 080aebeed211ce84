"""The provider activities, through the real `openai` and `ollama` clients over HTTP to a local fake provider:
answers, tokens, cost from the price table, and which failures Temporal may retry."""

from __future__ import annotations

import re
import socket
from contextlib import AsyncExitStack
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import genai_prices
import pytest
from fakes.ai_server import AUDIO_SECONDS, COMPLETION_TOKENS, PROMPT_TOKENS, FakeAIServer
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.ai.azure import AzureActivities
from activities.ai.errors import AIFailure
from activities.ai.offline import OFFLINE_MODEL, OfflineActivities
from activities.ai.ollama import OllamaActivities
from activities.ai.openai import OpenAIActivities
from activities.storage import LocalStorage
from models.ai_prices import PriceNotFound, PriceTable, load_prices
from models.enums import AIProvider
from models.messages.ai import ModelCall, ModelReply, TranscriptionCall
from settings import Settings
from worker import ai_activities

CALL = ModelCall(prompt="An app that books climbing gyms", temperature=0.2, max_tokens=300)


def chat_activity(provider: str, settings: Settings) -> Any:
    prices = load_prices(settings.ai_price_table)
    if provider == "openai":
        return OpenAIActivities(settings, prices).chat
    if provider == "azure":
        return AzureActivities(settings, prices).chat
    return OllamaActivities(settings, prices).chat


async def ask(provider: str, settings: Settings, call: ModelCall = CALL) -> ModelReply:
    return await ActivityEnvironment().run(chat_activity(provider, settings), call)


# --- answers and cost --------------------------------------------------------------------------------------


# Test prices (tests/fakes/ai_server.py), per million tokens; the fake reports 1,234 in and 567 out.
#   openai gpt-test     2.50 / 10.00  ->  1234 * 2.50  + 567 * 10.00 = 3085   + 5670   = 8755 micro-dollars
#   azure  gpt-test-eu  0.165 / 0.66  ->  1234 * 0.165 + 567 * 0.66  = 203.61 + 374.22 = 577.83 -> 578
#   ollama llama-test   0.10 / 0.20   ->  1234 * 0.10  + 567 * 0.20  = 123.4  + 113.4  = 236.8  -> 237
@pytest.mark.parametrize(
    ("provider", "model_used", "micros"),
    [("openai", "openai:gpt-test", 8755), ("azure", "azure:eu-chat", 578), ("ollama", "ollama:llama-test", 237)],
)
async def test_each_call_costs_its_tokens_times_the_tables_prices(
    provider: str, model_used: str, micros: int, ai_settings: Settings, fake_ai: FakeAIServer
) -> None:
    reply = await ask(provider, ai_settings)
    assert reply.text == f"{provider} says hello"
    assert reply.tier == AIProvider(provider.upper())
    assert (reply.input_tokens, reply.output_tokens) == (PROMPT_TOKENS, COMPLETION_TOKENS)
    assert reply.model_used == model_used
    assert reply.cost_usd_micros == micros
    assert reply.latency_ms >= 0
    [call] = fake_ai.calls_to(provider)  # type: ignore[arg-type]
    assert call.prompt == CALL.prompt


async def test_a_large_call_is_billed_to_the_cent(ai_settings: Settings, fake_ai: FakeAIServer) -> None:
    fake_ai.prompt_tokens, fake_ai.completion_tokens = 1_000_000, 250_000
    reply = await ask("openai", ai_settings)
    assert reply.cost_usd_micros == 5_000_000  # 1M * $2.50 + 0.25M * $10.00 = $5.00 exactly


async def test_requests_carry_the_right_credentials_model_and_options(
    ai_settings: Settings, fake_ai: FakeAIServer
) -> None:
    for provider in ("openai", "azure", "ollama"):
        await ask(provider, ai_settings)
    openai_call, azure_call, ollama_call = fake_ai.calls
    assert openai_call.headers["authorization"] == "Bearer sk-test-openai"
    assert openai_call.body["model"] == "gpt-test"
    assert (openai_call.body["temperature"], openai_call.body["max_tokens"]) == (0.2, 300)
    assert azure_call.path == "/openai/deployments/eu-chat/chat/completions"
    assert azure_call.query["api-version"] == "2024-10-21"
    assert azure_call.headers["api-key"] == "azure-test-key"
    assert ollama_call.body["model"] == "llama-test"
    assert ollama_call.body["options"] == {"temperature": 0.2, "num_predict": 300}


@pytest.mark.parametrize("provider", ["openai", "azure", "ollama"])
async def test_a_system_prompt_goes_first_as_its_own_message(
    provider: str, ai_settings: Settings, fake_ai: FakeAIServer
) -> None:
    await ask(provider, ai_settings, CALL.model_copy(update={"system": "You plan app prototypes."}))
    [sent] = fake_ai.calls
    assert sent.body["messages"] == [
        {"role": "system", "content": "You plan app prototypes."},
        {"role": "user", "content": CALL.prompt},
    ]


# --- failures: retryable or not, and the SDK never retries on its own ------------------------------------


@pytest.mark.parametrize("provider", ["openai", "azure", "ollama"])
@pytest.mark.parametrize(("status", "failure"), [(429, AIFailure.RATE_LIMITED), (500, AIFailure.PROVIDER_ERROR)])
async def test_rate_limits_and_server_errors_are_left_to_temporal_to_retry(
    provider: str, status: int, failure: AIFailure, ai_settings: Settings, fake_ai: FakeAIServer
) -> None:
    fake_ai.fail(provider, status)  # type: ignore[arg-type]
    with pytest.raises(ApplicationError) as raised:
        await ask(provider, ai_settings)
    assert raised.value.type == failure and not raised.value.non_retryable
    assert len(fake_ai.calls_to(provider)) == 1  # type: ignore[arg-type]  # the SDK did not retry by itself


@pytest.mark.parametrize("provider", ["openai", "azure", "ollama"])
@pytest.mark.parametrize(("status", "failure"), [(400, AIFailure.BAD_REQUEST), (401, AIFailure.AUTH_FAILED)])
async def test_bad_requests_and_rejected_credentials_are_not_retryable(
    provider: str, status: int, failure: AIFailure, ai_settings: Settings, fake_ai: FakeAIServer
) -> None:
    fake_ai.fail(provider, status)  # type: ignore[arg-type]
    with pytest.raises(ApplicationError, match=f"HTTP {status}") as raised:
        await ask(provider, ai_settings)
    assert raised.value.type == failure and raised.value.non_retryable
    assert len(fake_ai.calls_to(provider)) == 1  # type: ignore[arg-type]


@pytest.mark.parametrize("provider", ["openai", "azure"])
@pytest.mark.parametrize("refusal", ["content_filter", "filtered_answer"])
async def test_content_policy_refusals_are_not_retryable(
    provider: str, refusal: Any, ai_settings: Settings, fake_ai: FakeAIServer
) -> None:
    fake_ai.fail(provider, refusal)  # type: ignore[arg-type]
    with pytest.raises(ApplicationError, match="content policy") as raised:
        await ask(provider, ai_settings)
    assert raised.value.type == AIFailure.CONTENT_REFUSED and raised.value.non_retryable


@pytest.mark.parametrize("provider", ["openai", "azure", "ollama"])
async def test_a_provider_too_slow_for_the_timeout_is_retryable(
    provider: str, ai_settings: Settings, fake_ai: FakeAIServer
) -> None:
    fake_ai.slow(provider, 2.0)  # type: ignore[arg-type]
    with pytest.raises(ApplicationError) as raised:
        await ask(provider, ai_settings.model_copy(update={"ai_request_timeout_seconds": 0.3}))
    assert raised.value.type == AIFailure.UNREACHABLE and not raised.value.non_retryable


@pytest.mark.parametrize("provider", ["openai", "azure", "ollama"])
async def test_a_provider_that_refuses_connections_is_retryable(provider: str, ai_settings: Settings) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        nobody = f"http://127.0.0.1:{closed.getsockname()[1]}"
    unreachable = ai_settings.model_copy(
        update={"openai_base_url": f"{nobody}/v1", "azure_openai_endpoint": nobody, "ollama_host": nobody}
    )
    with pytest.raises(ApplicationError) as raised:
        await ask(provider, unreachable)
    assert raised.value.type == AIFailure.UNREACHABLE and not raised.value.non_retryable


# --- transcription -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "path", "model_used"),
    [
        ("openai", "/v1/audio/transcriptions", "openai:whisper-1"),
        ("azure", "/openai/deployments/eu-whisper/audio/transcriptions", "azure:whisper"),
    ],
)
async def test_transcription_sends_the_stored_audio_and_costs_its_minutes(
    provider: str, path: str, model_used: str, ai_settings: Settings, fake_ai: FakeAIServer, tmp_path: Path
) -> None:
    files = tmp_path / "files"
    (files / "voice").mkdir(parents=True)
    (files / "voice" / "idea.webm").write_bytes(b"\x1aE\xdf\xa3" + b"\0" * 2048)
    prices = load_prices(ai_settings.ai_price_table)
    kind = OpenAIActivities if provider == "openai" else AzureActivities
    activities = kind(ai_settings, prices, LocalStorage(files))
    call = TranscriptionCall(
        audio_key="voice/idea.webm", filename="idea.webm", content_type="audio/webm", language="en"
    )
    transcript = await ActivityEnvironment().run(activities.transcribe, call)
    assert transcript.text == f"{provider} heard: an app for booking climbing gyms"
    assert transcript.model_used == model_used
    assert transcript.audio_milliseconds == AUDIO_SECONDS * 1000
    assert transcript.cost_usd_micros == 9050  # 90.5 s at $0.006 a minute = $0.00905
    [sent] = fake_ai.calls_to(provider)  # type: ignore[arg-type]
    assert sent.path == path
    assert sent.body["file"] == {"filename": "idea.webm", "size": 2052, "content_type": "audio/webm"}
    assert sent.body["response_format"] == "verbose_json" and sent.body["language"] == "en"


async def test_transcription_of_audio_gone_from_storage_is_not_retryable(
    ai_settings: Settings, fake_ai: FakeAIServer, tmp_path: Path
) -> None:
    activities = OpenAIActivities(ai_settings, load_prices(ai_settings.ai_price_table), LocalStorage(tmp_path))
    call = TranscriptionCall(audio_key="voice/gone.webm", filename="gone.webm", content_type="audio/webm")
    with pytest.raises(ApplicationError, match="no longer in storage") as raised:
        await ActivityEnvironment().run(activities.transcribe, call)
    assert raised.value.non_retryable
    assert fake_ai.calls == []


async def test_azure_without_a_whisper_deployment_does_not_transcribe(
    ai_settings: Settings, fake_ai: FakeAIServer, tmp_path: Path
) -> None:
    no_whisper = ai_settings.model_copy(update={"azure_openai_transcription_deployment": None})
    activities = AzureActivities(no_whisper, load_prices(no_whisper.ai_price_table), LocalStorage(tmp_path))
    call = TranscriptionCall(audio_key="voice/x.webm", filename="x.webm", content_type="audio/webm")
    with pytest.raises(ApplicationError, match="not configured") as raised:
        await ActivityEnvironment().run(activities.transcribe, call)
    assert raised.value.type == AIFailure.NOT_CONFIGURED and raised.value.non_retryable


# --- the offline provider -----------------------------------------------------------------------------------


async def test_the_offline_tier_is_a_labelled_free_deterministic_template() -> None:
    first = await ActivityEnvironment().run(OfflineActivities().chat, CALL)
    again = await ActivityEnvironment().run(OfflineActivities().chat, CALL)
    assert first == again
    assert first.model_used == OFFLINE_MODEL == "offline:template"
    assert first.text.startswith("[Offline template: no AI model was asked.")
    assert CALL.prompt in first.text
    assert (first.cost_usd_micros, first.input_tokens, first.output_tokens) == (0, 0, 0)


# --- the price table ----------------------------------------------------------------------------------------


def test_the_shipped_price_table_prices_every_default_model() -> None:
    prices, defaults = load_prices(), Settings(_env_file=None)  # type: ignore[call-arg]
    assert prices.chat_price(AIProvider.OPENAI, defaults.openai_chat_model).cost_micros(1_000_000, 0) > 0
    assert prices.chat_price(AIProvider.AZURE, defaults.azure_openai_chat_model).cost_micros(0, 1_000_000) > 0
    assert prices.chat_price(AIProvider.OLLAMA, defaults.ollama_model).cost_micros(1_000_000, 1_000_000) == 0
    assert prices.transcription_price(AIProvider.OPENAI, defaults.openai_transcription_model).usd_per_audio_minute > 0
    assert prices.transcription_price(AIProvider.AZURE, defaults.azure_openai_transcription_model).checked.year >= 2025


@pytest.mark.parametrize(("provider", "model"), [("openai", "gpt-4o-mini"), ("azure", "gpt-4o")])
async def test_a_call_costs_what_genai_prices_computes_for_its_model_and_tokens(
    provider: str, model: str, ai_settings: Settings, fake_ai: FakeAIServer
) -> None:
    """No override row for these models: the price is genai-prices', cached input priced at its own rate."""
    model_setting = "openai_chat_model" if provider == "openai" else "azure_openai_chat_model"
    fake_ai.cached_tokens = 1_000
    reply = await ask(provider, ai_settings.model_copy(update={model_setting: model}))
    usage = genai_prices.Usage(input_tokens=PROMPT_TOKENS, output_tokens=COMPLETION_TOKENS, cache_read_tokens=1_000)
    expected = genai_prices.calc_price(usage, model, provider_id=provider).total_price * 1_000_000
    assert reply.cached_input_tokens == 1_000
    assert reply.cost_usd_micros == int(expected.quantize(Decimal(1), rounding=ROUND_HALF_UP)) > 0
    uncached = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=PROMPT_TOKENS, output_tokens=COMPLETION_TOKENS), model, provider_id=provider
    ).total_price
    assert reply.cost_usd_micros < uncached * 1_000_000  # the cached part was cheaper, not billed as fresh input


def test_an_override_row_prices_cached_input_at_its_own_rate_or_the_input_rate() -> None:
    row = {"input_usd_per_million_tokens": "2", "output_usd_per_million_tokens": "8", "checked": "2026-01-01"}
    table = PriceTable.model_validate(
        {
            "chat": {
                "openai": {
                    "plain": {**row, "source": "x"},
                    "cached": {**row, "source": "x", "cached_input_usd_per_million_tokens": "1"},
                }
            }
        }
    )
    assert table.chat_price(AIProvider.OPENAI, "plain").cost_micros(1_000, 100, 400) == 2_000 + 800
    assert table.chat_price(AIProvider.OPENAI, "cached").cost_micros(1_000, 100, 400) == 600 * 2 + 400 + 800


def test_prices_must_be_written_as_exact_strings() -> None:
    row = {"input_usd_per_million_tokens": 0.15, "output_usd_per_million_tokens": "0.60"}
    with pytest.raises(ValidationError, match="not TOML floats"):
        PriceTable.model_validate({"chat": {"openai": {"m": {**row, "checked": "2026-01-01", "source": "x"}}}})


def test_the_worker_refuses_to_start_with_a_model_it_cannot_price(
    ai_settings: Settings, engine: AsyncEngine, tmp_path: Path
) -> None:
    unpriced = ai_settings.model_copy(update={"openai_chat_model": "gpt-unknown"})
    with pytest.raises(PriceNotFound, match=re.escape('add [chat.openai."gpt-unknown"]')):
        ai_activities(unpriced, engine, LocalStorage(tmp_path), AsyncExitStack())
