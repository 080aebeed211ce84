"""GET /api/capabilities says what this server can do, from its settings; no sign-in, never counted."""

from __future__ import annotations

from conftest import AppFactory
from helpers import serve
from pydantic import SecretStr


async def test_the_embedded_default_says_answers_are_templates_and_voice_is_off(make_app: AppFactory) -> None:
    async with serve(make_app()) as api:
        response = await api.get("/api/capabilities")
    assert response.status_code == 200
    body = response.json()
    assert body["ai"] == {"providers": [], "template_answers": True, "eu_resident_providers": []}
    assert body["voice"] == {"available": False, "providers": []}
    assert body["payments"]["STRIPE"]["available"] is False
    assert "CRYPTO_COINBASE" not in body["payments"]
    assert (body["storage"], body["email"]) == ("local", "outbox")
    assert body["limits"]["ai"] == "2/day"
    assert body["verification"] == {"available": True, "reason": None}  # bubblewrap works here (CI installs it)


async def test_without_bubblewrap_verification_is_unavailable_and_says_why(make_app: AppFactory) -> None:
    async with serve(make_app(sandbox_bwrap="/nonexistent/bwrap")) as api:
        body = (await api.get("/api/capabilities")).json()
    assert body["verification"]["available"] is False
    assert "bubblewrap not found" in body["verification"]["reason"]


async def test_configured_providers_and_gateways_are_listed(make_app: AppFactory) -> None:
    app = make_app(
        openai_api_key=SecretStr("sk-test"),
        azure_openai_endpoint="https://example.openai.azure.com",
        azure_openai_api_key=SecretStr("az-test"),
        azure_openai_transcription_deployment="whisper",
        stripe_secret_key=SecretStr("sk_test_x"),
        stripe_webhook_secret=SecretStr("whsec_x"),
    )
    async with serve(app) as api:
        body = (await api.get("/api/capabilities")).json()
    assert body["ai"]["template_answers"] is False
    assert body["ai"]["providers"] == ["openai", "azure"]  # AI_FALLBACK_ORDER, configured ones only
    assert body["ai"]["eu_resident_providers"] == ["azure"]
    assert body["voice"] == {"available": True, "providers": ["openai", "azure"]}
    assert body["payments"]["STRIPE"]["available"] is True
    assert body["payments"]["STRIPE"]["currencies"]
    assert body["payments"]["STRIPE"]["emulated"] is False  # api.stripe.com


async def test_stripe_on_loopback_is_labelled_a_local_emulator(make_app: AppFactory) -> None:
    """What `statex run` sets up when no Stripe key is given: localstripe on 127.0.0.1."""
    app = make_app(
        stripe_secret_key=SecretStr("sk_test_statex_local_emulator"),
        stripe_webhook_secret=SecretStr("whsec_x"),
        stripe_api_base="http://127.0.0.1:8420",
    )
    async with serve(app) as api:
        body = (await api.get("/api/capabilities")).json()
    assert body["payments"]["STRIPE"] == {"available": True, "currencies": ["EUR", "CZK", "USD"], "emulated": True}
    assert body["payments"]["PAYPAL"]["emulated"] is False


async def test_asking_costs_nothing_of_the_daily_limit(make_app: AppFactory) -> None:
    async with serve(make_app(rate_limit_default="2/day"), client_ip="203.0.113.9") as api:
        statuses = {(await api.get("/api/capabilities")).status_code for _ in range(5)}
    assert statuses == {200}
