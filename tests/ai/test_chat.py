"""POST /api/ai/chat end to end: API -> ChatWorkflow (Temporal) -> provider activities -> the local fake
provider over HTTP, and one AIResponse row per answered chat."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fakes.ai_server import FakeAIServer
from helpers import eventually, serve
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select
from temporalio.client import Client

from ai.support import service, sign_in
from api.app import create_app
from models.db import open_session
from models.enums import AIProvider, ServiceTier
from models.tables import AIResponse
from services.idempotency import resource_id
from settings import Settings
from workflows.chat import ChatWorkflow, workflow_id

QUESTION = {"message": "An app that books climbing gyms: what would the first screen show?"}


async def rows_of(engine: AsyncEngine, user_id: uuid.UUID) -> list[AIResponse]:
    async with open_session(engine) as db:
        return list((await db.exec(select(AIResponse).where(AIResponse.user_id == user_id))).all())


async def attempts_of(temporal: Client, chat_id: str) -> dict[str, list[int]]:
    """Per activity type, the attempt number each run of it ended on, from the workflow's history."""
    scheduled: dict[int, str] = {}
    attempts: dict[str, list[int]] = {}
    async for event in temporal.get_workflow_handle(workflow_id(uuid.UUID(chat_id))).fetch_history_events():
        if event.HasField("activity_task_scheduled_event_attributes"):
            scheduled[event.event_id] = event.activity_task_scheduled_event_attributes.activity_type.name
        if event.HasField("activity_task_started_event_attributes"):
            started = event.activity_task_started_event_attributes
            attempts.setdefault(scheduled[started.scheduled_event_id], []).append(started.attempt)
    return attempts


# --- answers ------------------------------------------------------------------------------------------------


async def test_with_no_provider_configured_the_offline_template_answers(
    temporal: Client, engine: AsyncEngine, settings: Settings
) -> None:
    async with service(temporal, engine, settings) as api:
        account = await sign_in(api, engine)
        response = await api.post("/api/ai/chat", json=QUESTION, headers=account["headers"])
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["success"] is True
    assert (answer["model_used"], answer["template"]) == ("offline:template", True)
    assert answer["response"].startswith("[Offline template: no AI model was asked.")
    assert (answer["cost_usd"], answer["cost_usd_micros"], answer["tokens_used"]) == (0, 0, 0)
    [row] = await rows_of(engine, account["id"])
    assert (row.tier, row.model_used, row.call_key) == (
        AIProvider.OFFLINE,
        "offline:template",
        f"chat-{answer['chat_id']}",
    )
    assert row.response == answer["response"] and row.prompt == QUESTION["message"]
    assert await attempts_of(temporal, answer["chat_id"]) == {"offline_chat": [1], "record_ai_call": [1]}


async def test_rate_limit_and_server_error_are_retried_by_temporal_and_recorded_once(
    temporal: Client, engine: AsyncEngine, ai_settings: Settings, fake_ai: FakeAIServer
) -> None:
    fake_ai.fail("openai", 429, 500)
    async with service(temporal, engine, ai_settings) as api:
        account = await sign_in(api, engine)
        response = await api.post("/api/ai/chat", json={**QUESTION, "temperature": 0.3}, headers=account["headers"])
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["response"] == "openai says hello"
    assert (answer["model_used"], answer["template"]) == ("openai:gpt-test", False)
    assert answer["tokens_used"] == 1234 + 567
    assert (answer["cost_usd_micros"], answer["cost_usd"]) == (8755, 0.008755)
    assert len(fake_ai.calls_to("openai")) == 3 and fake_ai.calls_to("azure") == []
    assert await attempts_of(temporal, answer["chat_id"]) == {"openai_chat": [3], "record_ai_call": [1]}
    [row] = await rows_of(engine, account["id"])
    assert (row.tier, row.input_tokens, row.output_tokens, row.cost_usd_micros) == (AIProvider.OPENAI, 1234, 567, 8755)


@pytest.mark.parametrize(
    ("failure", "status", "message"),
    [
        (400, 502, "openai refused the request as invalid (HTTP 400)"),
        (401, 502, "openai rejected our credentials (HTTP 401)"),
        ("content_filter", 422, "openai refused under its content policy"),
    ],
)
async def test_a_request_no_retry_can_fix_fails_at_once_and_clearly(
    failure: Any,
    status: int,
    message: str,
    temporal: Client,
    engine: AsyncEngine,
    ai_settings: Settings,
    fake_ai: FakeAIServer,
) -> None:
    fake_ai.fail("openai", failure)
    async with service(temporal, engine, ai_settings) as api:
        account = await sign_in(api, engine)
        response = await api.post("/api/ai/chat", json=QUESTION, headers=account["headers"])
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    assert len(fake_ai.calls) == 1  # not retried, and no fallback to another provider either
    assert await rows_of(engine, account["id"]) == []


async def test_standard_users_fall_back_to_the_next_provider_when_one_stays_down(
    temporal: Client, engine: AsyncEngine, ai_settings: Settings, fake_ai: FakeAIServer
) -> None:
    fake_ai.fail_always("openai", 503)
    async with service(temporal, engine, ai_settings) as api:
        account = await sign_in(api, engine)
        response = await api.post("/api/ai/chat", json=QUESTION, headers=account["headers"])
    assert response.status_code == 200, response.text
    assert response.json()["model_used"] == "azure:eu-chat"
    assert len(fake_ai.calls_to("openai")) == ai_settings.ai_retry_maximum_attempts
    assert len(fake_ai.calls_to("azure")) == 1
    outcome = await temporal.get_workflow_handle_for(
        ChatWorkflow.run, workflow_id(uuid.UUID(response.json()["chat_id"]))
    ).result()
    assert outcome.providers_tried == [AIProvider.OPENAI, AIProvider.AZURE]


async def test_an_eu_users_prompt_never_reaches_openai_even_with_azure_down(
    temporal: Client, engine: AsyncEngine, ai_settings: Settings, fake_ai: FakeAIServer
) -> None:
    fake_ai.fail_always("azure", 500)
    async with service(temporal, engine, ai_settings) as api:
        account = await sign_in(api, engine, ServiceTier.EU_COMPLIANCE)
        response = await api.post("/api/ai/chat", json=QUESTION, headers=account["headers"])
        named = await api.post("/api/ai/chat", json={**QUESTION, "model": "openai"}, headers=account["headers"])
    assert response.status_code == 503, response.text
    assert "No AI provider answered after retries: azure:" in response.json()["error"]
    assert named.status_code == 403
    assert "openai is not EU-resident" in named.json()["error"]
    assert len(fake_ai.calls_to("azure")) == ai_settings.ai_retry_maximum_attempts
    assert fake_ai.calls_to("openai") == [] and fake_ai.calls_to("ollama") == []
    assert await rows_of(engine, account["id"]) == []


async def test_a_refused_provider_choice_uses_none_of_the_two_daily_chats(
    temporal: Client, engine: AsyncEngine, ai_settings: Settings, fake_ai: FakeAIServer
) -> None:
    async with service(temporal, engine, ai_settings) as api:
        account = await sign_in(api, engine, ServiceTier.EU_COMPLIANCE)
        headers = account["headers"]
        for _ in range(3):
            refused = await api.post("/api/ai/chat", json={**QUESTION, "model": "openai"}, headers=headers)
            assert refused.status_code == 403, refused.text
        assert (await api.post("/api/ai/chat", json=QUESTION, headers=headers)).status_code == 200
        assert (await api.post("/api/ai/chat", json=QUESTION, headers=headers)).status_code == 200
    assert [call.provider for call in fake_ai.calls] == ["azure", "azure"]


async def test_a_named_provider_is_asked_first(
    temporal: Client, engine: AsyncEngine, ai_settings: Settings, fake_ai: FakeAIServer
) -> None:
    async with service(temporal, engine, ai_settings) as api:
        account = await sign_in(api, engine)
        response = await api.post("/api/ai/chat", json={**QUESTION, "model": "ollama"}, headers=account["headers"])
    assert response.status_code == 200, response.text
    assert (response.json()["model_used"], response.json()["cost_usd_micros"]) == ("ollama:llama-test", 237)
    assert [call.provider for call in fake_ai.calls] == ["ollama"]


async def test_a_retried_request_with_an_idempotency_key_gets_the_first_answer(
    temporal: Client, engine: AsyncEngine, ai_settings: Settings, fake_ai: FakeAIServer
) -> None:
    async with service(temporal, engine, ai_settings) as api:
        account = await sign_in(api, engine)
        headers = {**account["headers"], "Idempotency-Key": "chat-retry-1"}
        first = await api.post("/api/ai/chat", json=QUESTION, headers=headers)
        again = await api.post("/api/ai/chat", json=QUESTION, headers=headers)
    assert first.status_code == again.status_code == 200, again.text
    assert first.json() == again.json()
    assert first.json()["chat_id"] == str(resource_id("chat", f"user:{account['id']}", "chat-retry-1"))
    assert len(fake_ai.calls) == 1
    assert len(await rows_of(engine, account["id"])) == 1


# --- a slow answer: 202 and a status URL ----------------------------------------------------------------------


async def test_an_answer_slower_than_the_wait_is_202_with_a_status_url_polled_outside_the_ai_limit(
    temporal: Client, engine: AsyncEngine, ai_settings: Settings, fake_ai: FakeAIServer
) -> None:
    fake_ai.slow("openai", 1.5)
    quick_wait = ai_settings.model_copy(update={"ai_chat_wait_seconds": 0.2})
    async with service(temporal, engine, quick_wait) as api:
        account = await sign_in(api, engine)
        stranger = await sign_in(api, engine)
        accepted = await api.post("/api/ai/chat", json=QUESTION, headers=account["headers"])
        assert accepted.status_code == 202, accepted.text
        chat_id = accepted.json()["chat_id"]
        assert accepted.json()["status_url"] == accepted.headers["Location"] == f"/api/chats/{chat_id}"

        running = await api.get(f"/api/chats/{chat_id}", headers=account["headers"])
        assert (running.status_code, running.json()["status"]) == (200, "running")
        assert (await api.get(f"/api/chats/{chat_id}", headers=stranger["headers"])).status_code == 404

        async def answered() -> dict[str, Any] | None:
            polled = await api.get(f"/api/chats/{chat_id}", headers=account["headers"])
            assert polled.status_code == 200, polled.text
            return polled.json() if polled.json()["status"] == "completed" else None

        done = await eventually(answered, within=30, what="the slow chat to complete")
        assert done["result"]["response"] == "openai says hello"
        assert done["result"]["cost_usd_micros"] == 8755
        assert (await api.get(f"/api/chats/{chat_id}", headers=stranger["headers"])).status_code == 404
        assert (await api.get(f"/api/chats/{uuid.uuid4()}", headers=account["headers"])).status_code == 404
        # All that polling cost nothing of the 2 a day: one more chat goes through, the one after does not.
        assert (await api.post("/api/ai/chat", json=QUESTION, headers=account["headers"])).status_code == 200
        assert (await api.post("/api/ai/chat", json=QUESTION, headers=account["headers"])).status_code == 429


async def test_a_slow_chat_that_then_fails_reports_why_on_its_status_url(
    temporal: Client, engine: AsyncEngine, ai_settings: Settings, fake_ai: FakeAIServer
) -> None:
    fake_ai.slow("openai", 0.5)
    fake_ai.fail("openai", 400)
    quick_wait = ai_settings.model_copy(update={"ai_chat_wait_seconds": 0.1})
    async with service(temporal, engine, quick_wait) as api:
        account = await sign_in(api, engine)
        accepted = await api.post("/api/ai/chat", json=QUESTION, headers=account["headers"])
        assert accepted.status_code == 202, accepted.text

        async def failed() -> dict[str, Any] | None:
            polled = (await api.get(accepted.json()["status_url"], headers=account["headers"])).json()
            return polled if polled["status"] == "failed" else None

        report = await eventually(failed, within=30, what="the chat to fail")
    assert "refused the request as invalid (HTTP 400)" in report["error"]


# --- bad input --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({"message": ""}, "body.message", "at least 1 character"),
        ({"message": "   "}, "body.message", "more than whitespace"),
        ({"message": "a\u0000b"}, "body.message", "must not contain control characters such as NUL"),
        ({"message": "x" * 10_001}, "body.message", "at most 10000 characters"),
        ({**QUESTION, "temperature": 3}, "body.temperature", "less than or equal to 2"),
        ({**QUESTION, "max_tokens": 0}, "body.max_tokens", "greater than or equal to 1"),
        ({**QUESTION, "max_tokens": 4001}, "body.max_tokens", "less than or equal to 4000"),
        ({**QUESTION, "model": "gpt-5"}, "body.model", "'ollama', 'openai' or 'azure'"),
        ({**QUESTION, "stream": True}, "body.stream", "Extra inputs are not permitted"),
        ({}, "body.message", "Field required"),
    ],
)
async def test_bad_input_is_a_clear_422(
    body: dict[str, Any], field: str, says: str, temporal: Client, engine: AsyncEngine, settings: Settings
) -> None:
    async with serve(create_app(settings, temporal=temporal)) as api:
        account = await sign_in(api, engine)
        response = await api.post("/api/ai/chat", json=body, headers=account["headers"])
    assert response.status_code == 422
    error = response.json()
    assert field in error["error"] and says in error["error"]
    assert any(detail["field"] == field for detail in error["details"])


async def test_bad_input_and_missing_sign_in_use_none_of_the_two_daily_chats(
    temporal: Client, engine: AsyncEngine, settings: Settings
) -> None:
    async with service(temporal, engine, settings) as api:
        account = await sign_in(api, engine)
        headers = account["headers"]
        for bad in ({"message": ""}, {**QUESTION, "temperature": 3}, {**QUESTION, "max_tokens": 0}):
            assert (await api.post("/api/ai/chat", json=bad, headers=headers)).status_code == 422
        assert (await api.post("/api/ai/chat", json=QUESTION)).status_code == 401
        assert (await api.post("/api/ai/chat", json=QUESTION, headers=headers)).status_code == 200
        assert (await api.post("/api/ai/chat", json=QUESTION, headers=headers)).status_code == 200
        limited = await api.post("/api/ai/chat", json=QUESTION, headers=headers)
    assert limited.status_code == 429 and limited.headers["Retry-After"]
