"""Tier choice (pure): who may serve a user, in which order, and when nobody may."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from models.enums import AIProvider, ServiceTier
from settings import Settings
from workflows.ai import ProviderRefused, Refusal, Routing, provider_chain, transcription_chain

OLLAMA, OPENAI, AZURE, OFFLINE = AIProvider.OLLAMA, AIProvider.OPENAI, AIProvider.AZURE, AIProvider.OFFLINE
STANDARD, EU, PREMIUM = ServiceTier.STANDARD, ServiceTier.EU_COMPLIANCE, ServiceTier.PREMIUM


def routing(
    *configured: AIProvider,
    eu: tuple[AIProvider, ...] = (AZURE,),
    order: tuple[AIProvider, ...] = (OPENAI, AZURE, OLLAMA),
    transcribers: tuple[AIProvider, ...] = (),
) -> Routing:
    return Routing(frozenset(configured), frozenset(transcribers), frozenset(eu), order)


def test_nothing_configured_means_the_offline_template_for_everyone() -> None:
    for tier in ServiceTier:
        assert provider_chain(routing(), tier) == [OFFLINE]
        assert provider_chain(routing(), tier, requested=OPENAI) == [OFFLINE]


def test_standard_users_fall_back_along_the_configured_order_skipping_unconfigured() -> None:
    assert provider_chain(routing(OPENAI, AZURE, OLLAMA), STANDARD) == [OPENAI, AZURE, OLLAMA]
    assert provider_chain(routing(AZURE, OLLAMA), PREMIUM) == [AZURE, OLLAMA]
    assert provider_chain(routing(OPENAI, OLLAMA, order=(OLLAMA, OPENAI)), STANDARD) == [OLLAMA, OPENAI]


def test_a_named_provider_is_tried_first_then_the_rest_of_the_order() -> None:
    assert provider_chain(routing(OPENAI, AZURE, OLLAMA), STANDARD, requested=OLLAMA) == [OLLAMA, OPENAI, AZURE]


def test_a_named_provider_without_configuration_is_skipped() -> None:
    assert provider_chain(routing(AZURE), STANDARD, requested=OPENAI) == [AZURE]


def test_eu_users_are_served_by_eu_resident_providers_only() -> None:
    assert provider_chain(routing(OPENAI, AZURE, OLLAMA), EU) == [AZURE]
    assert provider_chain(routing(OPENAI, AZURE, OLLAMA, eu=(AZURE, OLLAMA)), EU) == [AZURE, OLLAMA]


def test_an_eu_user_naming_a_non_eu_provider_is_refused_not_rerouted() -> None:
    with pytest.raises(ProviderRefused, match=r"openai is not EU-resident.*served only by azure") as refused:
        provider_chain(routing(OPENAI, AZURE), EU, requested=OPENAI)
    assert refused.value.kind == Refusal.PROVIDER_NOT_ALLOWED


def test_an_eu_user_with_no_eu_provider_configured_gets_no_non_eu_one() -> None:
    with pytest.raises(ProviderRefused, match="EU-resident AI provider") as refused:
        provider_chain(routing(OPENAI, OLLAMA), EU)
    assert refused.value.kind == Refusal.NO_PROVIDER


def test_routing_reads_configuration_from_settings() -> None:
    bare = Routing.from_settings(Settings(_env_file=None))  # type: ignore[call-arg]
    assert bare.configured == frozenset() and bare.eu_resident == {AZURE}
    assert bare.fallback_order == (OPENAI, AZURE, OLLAMA)
    full = Routing.from_settings(
        Settings(  # type: ignore[call-arg]
            _env_file=None,
            ollama_host="http://ollama.eu.internal:11434",
            openai_api_key=SecretStr("sk"),
            azure_openai_endpoint="https://x.openai.azure.com",
            azure_openai_api_key=SecretStr("k"),
            azure_openai_transcription_deployment="whisper",
            ai_eu_resident_providers=["azure", "ollama"],
            ai_fallback_order=["azure", "openai", "ollama"],
        )
    )
    assert full.configured == {OLLAMA, OPENAI, AZURE}
    assert full.transcribers == {OPENAI, AZURE}
    assert full.eu_resident == {AZURE, OLLAMA}
    assert full.fallback_order == (AZURE, OPENAI, OLLAMA)
    azure_without_key = Settings(_env_file=None, azure_openai_endpoint="https://x.openai.azure.com")  # type: ignore[call-arg]
    assert Routing.from_settings(azure_without_key).configured == frozenset()


def test_voice_for_eu_users_goes_to_azure_whisper_only() -> None:
    both = routing(OPENAI, AZURE, transcribers=(OPENAI, AZURE))
    assert transcription_chain(both, STANDARD) == [OPENAI, AZURE]
    assert transcription_chain(both, EU) == [AZURE]
    with pytest.raises(ProviderRefused, match="AZURE_OPENAI_TRANSCRIPTION_DEPLOYMENT"):
        transcription_chain(routing(OPENAI, AZURE, transcribers=(OPENAI,)), EU)


def test_voice_on_the_offline_tier_says_which_setting_enables_it() -> None:
    with pytest.raises(ProviderRefused, match="set OPENAI_API_KEY or AZURE_OPENAI_TRANSCRIPTION_DEPLOYMENT") as refused:
        transcription_chain(routing(), STANDARD)
    assert refused.value.kind == Refusal.NO_TRANSCRIBER
