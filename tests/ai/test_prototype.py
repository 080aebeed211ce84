"""POST /api/ai/prototype end to end: API -> PrototypeWorkflow (Temporal) -> the agent steps through the provider
activities -> a zip stored as a 24-hour file -> one email; GET /api/prototypes/{id} live and after."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from fakes.ai_server import FakeAIServer
from helpers import eventually, serve
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select
from temporalio.client import Client

from ai.support import ReturnedConnections, body_of, calls_of, finished, outbox, service, sign_in, unzip
from api.app import create_app
from models.db import open_session
from models.enums import AIProvider, PrototypeStatus, ServiceTier
from models.prompts import CODE, PIPELINE, TESTS
from models.tables import EmailDelivery, File, Prototype
from services.prototypes.views import stored_progress
from settings import Settings
from worker import build_worker
from workflows.prototype import PrototypeWorkflow, planned_steps, result_file_id, workflow_id
from workflows.prototype_steps import call_key
from workflows.retention import FileRetentionWorkflow

IDEA = {"idea": "An app that books climbing gyms: members see free slots and reserve one."}
AGENT_STEPS = [step.name for step in PIPELINE]


async def submit(api: httpx.AsyncClient, account: dict[str, Any], body: dict[str, Any] = IDEA) -> str:
    accepted = await api.post("/api/ai/prototype", json=body, headers=account["headers"])
    assert accepted.status_code == 202, accepted.text
    return str(accepted.json()["prototype_id"])


async def activity_summaries(temporal: Client, prototype_id: str) -> list[str]:
    """What the Temporal UI shows for each activity the workflow scheduled (decoded, as through the codec server)."""
    handle = temporal.get_workflow_handle(workflow_id(uuid.UUID(prototype_id)))
    summaries = []
    async for event in handle.fetch_history_events():
        if event.HasField("activity_task_scheduled_event_attributes"):
            summaries.append(await temporal.data_converter.decode([event.user_metadata.summary], [str]))
    return [summary for (summary,) in summaries]


# --- the offline provider, end to end -----------------------------------------------------------------------


async def test_offline_prototype_end_to_end_submit_poll_download_and_email(
    temporal: Client, engine: AsyncEngine, settings: Settings
) -> None:
    async with service(temporal, engine, settings) as api:
        account = await sign_in(api, engine)
        accepted = await api.post("/api/ai/prototype", json=IDEA, headers=account["headers"])
        assert accepted.status_code == 202, accepted.text
        prototype_id = accepted.json()["prototype_id"]
        assert accepted.json()["status_url"] == accepted.headers["Location"] == f"/api/prototypes/{prototype_id}"
        assert accepted.json()["workflow_id"] == f"prototype-{prototype_id}"

        done = await finished(api, temporal, account, prototype_id)
        assert done["status"] == "COMPLETED", done
        assert done["steps"] == done["steps_done"] == [*AGENT_STEPS, "package"]
        assert done["template"] is True  # the offline provider: every answer is a template, and the status says so
        async with open_session(engine) as db:  # the row holds what the workflow reported, not a reconstruction
            row = await db.get(Prototype, uuid.UUID(prototype_id))
            assert row is not None and row.steps_done == done["steps_done"]
        assert (done["progress_percent"], done["cost_usd_micros"], done["current_step"]) == (100, 0, None)
        file_id = str(result_file_id(uuid.UUID(prototype_id)))
        assert (done["file_id"], done["download_url"]) == (file_id, f"/api/files/{file_id}")

        download = await api.get(done["download_url"], headers=account["headers"])
        assert download.status_code == 200, download.text
        link = urlsplit(done["download_link"])  # absolute, signed: a browser needs no Authorization header
        assert f"{link.scheme}://{link.netloc}" == settings.public_api_url
        assert (await api.get(f"{link.path}?{link.query}")).content == download.content

        # The email's link works without signing in, for this file only, and not once tampered with.
        [email] = outbox(settings)
        link = re.search(r"http://127\.0\.0\.1:8000(/api/files/\S+)", body_of(email))
        assert link is not None and link.group(1).startswith(f"/api/files/{file_id}?token=")
        from_email = await api.get(link.group(1))
        assert from_email.status_code == 200 and from_email.content == download.content
        token = link.group(1).split("token=", 1)[1]
        elsewhere = await api.get(f"/api/files/{uuid.uuid4()}?token={token}")
        tampered = await api.get(f"/api/files/{file_id}?token={token[:-2]}xx")
        assert (elsewhere.status_code, tampered.status_code) == (401, 401)
        assert tampered.json()["error"] == "The download link is invalid or has expired"
        assert download.headers["content-type"] == "application/zip"
        retention = temporal.get_workflow_handle_for(FileRetentionWorkflow.run, f"file-{file_id}")
        deletes_at = (await retention.query(FileRetentionWorkflow.status)).deletes_at

    files = unzip(download.content)
    assert set(files) == {
        "README.md",
        "REQUIREMENTS.md",
        "PLAN.md",
        "CODE.md",
        "TESTS.md",
        "REVIEW.md",
        "VERIFICATION.md",
        "code/main.py",
        "code/requirements.txt",
        "code/test_main.py",
    }
    assert "This is an offline template, not an AI model's work." in files["README.md"]
    assert IDEA["idea"] in files["README.md"]
    for document in ("REQUIREMENTS.md", "PLAN.md", "CODE.md", "TESTS.md", "REVIEW.md"):
        assert files[document].startswith("[Offline template: no AI model was asked.")
    assert files["code/main.py"].startswith('"""Offline template: no AI model wrote this.')
    compile(files["code/main.py"], "main.py", "exec")  # the skeleton is real Python
    assert "**verified: the code passed every check in the sandbox.**" in files["VERIFICATION.md"]
    assert "| pytest test_main.py | passed |" in files["VERIFICATION.md"]  # the tests agent's template ran
    assert done["verified"] is True and done["fix_rounds"] == 0  # the sandbox agrees

    rows = await calls_of(engine, prototype_id)
    assert [row.step for row in rows] == AGENT_STEPS
    assert {row.model_used for row in rows} == {"offline:template"}
    assert [row.call_key for row in rows] == [call_key(uuid.UUID(prototype_id), step) for step in AGENT_STEPS]

    [email] = outbox(settings)
    assert email.name == f"prototype-{prototype_id}-ready.eml"
    assert f"http://127.0.0.1:8000/api/files/{file_id}" in body_of(email)
    assert "this is an offline template to fill in, not an AI model's work" in body_of(email)

    # The zip lives 24 hours like any upload: its own retention timer, found by the user's id.
    async with open_session(engine) as db:
        stored = await db.get(File, uuid.UUID(file_id))
    assert stored is not None and stored.user_id == account["id"] and stored.size_bytes == len(download.content)
    assert deletes_at == stored.expires_at
    assert timedelta(hours=23, minutes=59) < stored.expires_at - stored.created_at <= timedelta(hours=24)

    # The Temporal UI names each step's call.
    summaries = await activity_summaries(temporal, prototype_id)
    assert [summary for summary in summaries if " via " in summary] == [f"{step} via offline" for step in AGENT_STEPS]
    assert "zip and store the files" in summaries
    assert "verify the code in a sandbox (round 0)" in summaries


async def test_a_retried_submission_with_an_idempotency_key_gets_the_first_prototype(
    temporal: Client, engine: AsyncEngine, settings: Settings
) -> None:
    async with service(temporal, engine, settings) as api:
        account = await sign_in(api, engine)
        headers = {**account["headers"], "Idempotency-Key": "prototype-retry-1"}
        first = await api.post("/api/ai/prototype", json=IDEA, headers=headers)
        again = await api.post("/api/ai/prototype", json=IDEA, headers=headers)
        assert first.status_code == again.status_code == 202, again.text
        assert first.json()["prototype_id"] == again.json()["prototype_id"]
        await finished(api, temporal, account, first.json()["prototype_id"])
    assert len(await calls_of(engine, first.json()["prototype_id"])) == len(AGENT_STEPS)
    assert len(outbox(settings)) == 1


# --- status: the owner only, and polling is free ------------------------------------------------------------


async def test_polling_the_status_uses_none_of_the_two_daily_ai_requests(
    temporal: Client, engine: AsyncEngine, settings: Settings
) -> None:
    async with service(temporal, engine, settings) as api:
        account = await sign_in(api, engine)
        prototype_id = await submit(api, account)
        await finished(api, temporal, account, prototype_id)
        for _ in range(5):
            assert (await api.get(f"/api/prototypes/{prototype_id}", headers=account["headers"])).status_code == 200
            assert (await api.get("/api/prototypes", headers=account["headers"])).status_code == 200
        second = await api.post("/api/ai/prototype", json=IDEA, headers=account["headers"])
        third = await api.post("/api/ai/prototype", json=IDEA, headers=account["headers"])
    assert second.status_code == 202, second.text
    assert third.status_code == 429 and third.headers["Retry-After"]


async def test_only_the_owner_sees_a_prototype(temporal: Client, engine: AsyncEngine, settings: Settings) -> None:
    async with service(temporal, engine, settings) as api:
        owner, stranger = await sign_in(api, engine), await sign_in(api, engine)
        prototype_id = await submit(api, owner)
        done = await finished(api, temporal, owner, prototype_id)
        theirs = await api.get(f"/api/prototypes/{prototype_id}", headers=stranger["headers"])
        assert theirs.status_code == 404
        assert theirs.json()["error"] == "Prototype not found"
        assert (await api.get(done["download_url"], headers=stranger["headers"])).status_code == 404
        assert (await api.get("/api/prototypes", headers=stranger["headers"])).json() == []
        listed = (await api.get("/api/prototypes", headers=owner["headers"])).json()
        assert (await api.get(f"/api/prototypes/{uuid.uuid4()}", headers=owner["headers"])).status_code == 404
    assert [item["prototype_id"] for item in listed] == [prototype_id]
    assert listed[0]["status"] == "COMPLETED" and listed[0]["download_url"] == done["download_url"]


def test_a_stored_prototype_lists_the_steps_its_own_run_went_through() -> None:
    """A row finished before the tests agent existed shows the four agents it had, not a tests step never run."""
    in_turn = ["requirements", "plan", "code", "review", "package"]
    older = Prototype(user_id=uuid.uuid4(), idea="x", status=PrototypeStatus.COMPLETED, steps_done=in_turn)
    newer = Prototype(
        user_id=uuid.uuid4(), idea="x", status=PrototypeStatus.COMPLETED, steps_done=planned_steps(voice=False)
    )
    assert stored_progress(older).steps == in_turn
    assert stored_progress(newer).steps == [*AGENT_STEPS, "package"]


# --- providers: per-step preference, failures, restarts ------------------------------------------------------


async def test_each_step_is_one_recorded_call_and_the_code_step_asks_its_preferred_provider(
    temporal: Client, engine: AsyncEngine, ai_settings: Settings, fake_ai: FakeAIServer
) -> None:
    azure_first = ai_settings.model_copy(update={"ai_fallback_order": ["azure", "openai", "ollama"]})
    async with service(temporal, engine, azure_first) as api:
        account = await sign_in(api, engine)
        prototype_id = await submit(api, account)
        done = await finished(api, temporal, account, prototype_id)
    assert (done["status"], done["template"]) == ("COMPLETED", False), done  # real models answered
    rows = await calls_of(engine, prototype_id)
    assert [(row.step, row.tier) for row in rows] == [
        ("requirements", AIProvider.AZURE),
        ("plan", AIProvider.AZURE),
        ("code", AIProvider.OPENAI),  # PIPELINE says: code prefers OpenAI when the user's chain allows it
        ("tests", AIProvider.OPENAI),  # and so do the tests
        ("review", AIProvider.AZURE),
    ]
    assert done["cost_usd_micros"] == sum(row.cost_usd_micros for row in rows) == 3 * 578 + 2 * 8755
    # Each step built on the ones before it: the plan's prompt carries the requirements' answer.
    plan_prompt = next(call.prompt for call in fake_ai.calls if "software architect" in call.prompt)
    assert IDEA["idea"] in plan_prompt and "azure says hello" in plan_prompt


async def test_the_code_and_tests_agents_are_in_flight_at_the_same_time_each_its_own_row(
    temporal: Client, engine: AsyncEngine, ai_settings: Settings, fake_ai: FakeAIServer
) -> None:
    fake_ai.meet(CODE.role, TESTS.role)  # neither answers until both are asked; one asked alone is refused
    async with service(temporal, engine, ai_settings) as api:
        account = await sign_in(api, engine)
        prototype_id = await submit(api, account)
        done = await finished(api, temporal, account, prototype_id)
    assert done["status"] == "COMPLETED", done
    assert fake_ai.arrived == {CODE.role, TESTS.role}
    rows = {row.step: row for row in await calls_of(engine, prototype_id)}
    code, tests = rows["code"], rows["tests"]
    assert (code.call_key, tests.call_key) == (
        call_key(uuid.UUID(prototype_id), "code"),
        call_key(uuid.UUID(prototype_id), "tests"),
    )
    assert (code.tier, code.cost_usd_micros, tests.tier, tests.cost_usd_micros) == (AIProvider.OPENAI, 8755) * 2
    assert done["cost_usd_micros"] == sum(row.cost_usd_micros for row in rows.values())


async def test_a_provider_refusing_the_request_fails_the_prototype_with_one_email_and_no_retry(
    temporal: Client, engine: AsyncEngine, ai_settings: Settings, fake_ai: FakeAIServer
) -> None:
    fake_ai.fail("openai", 400)
    async with service(temporal, engine, ai_settings) as api:
        account = await sign_in(api, engine)
        prototype_id = await submit(api, account)
        done = await finished(api, temporal, account, prototype_id)
    assert done["status"] == "FAILED"
    assert "openai refused the request as invalid (HTTP 400)" in done["error"]
    assert (done["current_step"], done["steps_done"], done["file_id"], done["download_url"]) == (
        "requirements",
        [],
        None,
        None,
    )
    assert len(fake_ai.calls) == 1  # not retried, no fallback
    assert await calls_of(engine, prototype_id) == []
    [email] = outbox(ai_settings)
    assert email.name == f"prototype-{prototype_id}-failed.eml"
    assert "Why: openai refused the request as invalid (HTTP 400)" in body_of(email)


async def test_the_worker_stopped_mid_pipeline_and_started_again_finishes_with_every_row_and_email_once(
    temporal: Client, engine: AsyncEngine, ai_settings: Settings, fake_ai: FakeAIServer
) -> None:
    plan_role = next(step.role for step in PIPELINE if step.name == "plan")

    def calls_to_plan() -> list[Any]:
        return [call for call in fake_ai.calls_to("openai") if call.body["messages"][0]["content"] == plan_role]

    async def plan_asked() -> bool:
        return bool(calls_to_plan())

    fake_ai.slow("openai", 0, 5.0)  # the plan step's first attempt is still waiting when the worker stops
    async with serve(create_app(ai_settings, temporal=temporal)) as api:
        account = await sign_in(api, engine)
        # No sticky cache, so the next worker picks the workflow up at once rather than after a timeout.
        async with build_worker(temporal, ai_settings, engine, max_cached_workflows=0):
            prototype_id = await submit(api, account)
            await eventually(plan_asked, within=30, what="the plan step's call")
        handle = temporal.get_workflow_handle_for(PrototypeWorkflow.run, workflow_id(uuid.UUID(prototype_id)))
        async with open_session(engine) as db:
            halfway = await db.get(Prototype, uuid.UUID(prototype_id))
        assert halfway is not None and (halfway.status, halfway.current_step) == (PrototypeStatus.RUNNING, "plan")
        async with build_worker(temporal, ai_settings, engine):
            outcome = await handle.result()
            done = await finished(api, temporal, account, prototype_id)
    assert outcome.status == PrototypeStatus.COMPLETED and done["status"] == "COMPLETED"
    assert len(calls_to_plan()) == 2  # the interrupted attempt, then the retry on the new worker
    rows = await calls_of(engine, prototype_id)
    assert [row.step for row in rows] == AGENT_STEPS
    assert len(fake_ai.calls_to("openai")) == len(AGENT_STEPS) + 1
    assert [email.name for email in outbox(ai_settings)] == [f"prototype-{prototype_id}-ready.eml"]
    async with open_session(engine) as db:
        statement = select(EmailDelivery).where(EmailDelivery.message_id.startswith(f"prototype-{prototype_id}"))  # type: ignore[attr-defined]
        assert len((await db.exec(statement)).all()) == 1


# --- bad input -----------------------------------------------------------------------------------------------


async def test_bad_input_is_a_clear_422_and_uses_none_of_the_quota(
    temporal: Client, engine: AsyncEngine, settings: Settings
) -> None:
    async with service(temporal, engine, settings) as api:
        account = await sign_in(api, engine)
        headers = account["headers"]
        for body, says in (
            ({"idea": ""}, "body.idea: String should have at least 1 character"),
            ({"idea": "   "}, "body.idea: must contain more than whitespace"),
            ({"idea": "\u0000"}, "body.idea: must not contain control characters such as NUL"),
            ({"idea": "x" * 10_001}, "body.idea: String should have at most 10000 characters"),
            ({**IDEA, "model": "gpt-5"}, "body.model: Input should be 'ollama', 'openai' or 'azure'"),
        ):
            refused = await api.post("/api/ai/prototype", json=body, headers=headers)
            assert refused.status_code == 422 and says in refused.json()["error"], refused.text
        assert (await api.post("/api/ai/prototype", json=IDEA, headers=headers)).status_code == 202
        assert (await api.post("/api/ai/prototype", json=IDEA, headers=headers)).status_code == 202


async def test_a_refused_provider_choice_uses_none_of_the_quota_and_starts_nothing(
    temporal: Client, engine: AsyncEngine, ai_settings: Settings, fake_ai: FakeAIServer
) -> None:
    async with serve(create_app(ai_settings, temporal=temporal)) as api:
        account = await sign_in(api, engine, ServiceTier.EU_COMPLIANCE)
        for _ in range(3):
            refused = await api.post("/api/ai/prototype", json={**IDEA, "model": "openai"}, headers=account["headers"])
            assert refused.status_code == 403, refused.text
            assert "openai is not EU-resident" in refused.json()["error"]
        assert (await api.get("/api/prototypes", headers=account["headers"])).json() == []
        assert (await api.post("/api/ai/prototype", json=IDEA, headers=account["headers"])).status_code == 202
        assert (await api.post("/api/ai/prototype", json=IDEA, headers=account["headers"])).status_code == 202
    assert fake_ai.calls == []  # no worker here: the two accepted ones wait, nothing reached a provider


async def test_long_polling_answers_when_the_pipeline_finishes(
    temporal: Client, engine: AsyncEngine, settings: Settings
) -> None:
    """`?wait=` holds the status request until the result is there: one request instead of many."""
    async with serve(create_app(settings, temporal=temporal)) as api:
        account = await sign_in(api, engine)
        prototype_id = await submit(api, account)  # no worker yet: nothing can progress
        status_url = f"/api/prototypes/{prototype_id}"
        immediate = await api.get(status_url, headers=account["headers"])
        assert immediate.json()["status"] in {"QUEUED", "RUNNING"}
        waiting = asyncio.create_task(api.get(status_url, params={"wait": 30}, headers=account["headers"]))
        async with build_worker(temporal, settings, engine):
            answered = await asyncio.wait_for(waiting, 60)
            await temporal.get_workflow_handle(workflow_id(uuid.UUID(prototype_id))).result()
        too_long = await api.get(status_url, params={"wait": 61}, headers=account["headers"])
    assert answered.status_code == 200
    assert answered.json()["status"] == "COMPLETED"
    assert answered.json()["download_url"]
    assert too_long.status_code == 422


async def test_long_polls_hold_no_database_connection_while_they_wait(
    temporal: Client, engine: AsyncEngine, settings: Settings
) -> None:
    """With one pooled connection, two long polls on a prototype that makes no progress (no worker yet) wait
    on Temporal, not on the connection: another user is answered at once meanwhile, and both polls answer."""
    one_connection = settings.model_copy(
        update={"database_pool_size": 1, "database_pool_overflow": 0, "database_pool_timeout_seconds": 1}
    )
    app = create_app(one_connection, temporal=temporal)
    async with serve(app) as api:
        owner, other = await sign_in(api, engine), await sign_in(api, engine)
        prototype_id = await submit(api, owner)
        # Each poll: one connection to sign in (a read), one session to read the row; both given back.
        returned = ReturnedConnections(app.state.runtime.database)
        status_url = f"/api/prototypes/{prototype_id}"
        polls = [
            asyncio.create_task(api.get(status_url, params={"wait": 30}, headers=owner["headers"])) for _ in range(2)
        ]

        async def both_polls_waiting() -> bool:
            return returned.count >= 4

        await eventually(both_polls_waiting, what="both polls to have read the row and let their sessions go")
        for _ in range(3):
            me = await asyncio.wait_for(api.get("/auth/me", headers=other["headers"]), 5)
            assert me.status_code == 200, me.text
        assert not any(poll.done() for poll in polls)  # the answers above came while both polls were waiting
        async with build_worker(temporal, settings, engine):
            answered = await asyncio.wait_for(asyncio.gather(*polls), 60)
    assert [poll.status_code for poll in answered] == [200, 200]
    assert [poll.json()["status"] for poll in answered] == ["COMPLETED", "COMPLETED"]
