"""Workers stopped, as a deploy or a crash stops them, while prototypes run.

No worker at all: a submission still answers 202 with its status URL and keeps its row; a worker that comes
later does the work. A worker process killed in the middle of a long activity (a model call): Temporal notices
by the missing heartbeats and retries the call on another worker within seconds, not after the call's
minute-long timeout. Given SIGTERM: it stops polling, finishes the call, and exits 0."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

from fakes.ai_server import FakeAIServer
from helpers import eventually, serve
from processes import exit_code_within, service_process, settings_env
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from ai.support import finished, sign_in
from ai.test_prototype import IDEA, submit
from api.app import create_app
from models.db import open_session
from models.enums import PrototypeStatus
from models.prompts import PIPELINE
from models.tables import Prototype
from settings import Settings
from worker import build_worker
from workflows.prototype import PrototypeWorkflow, workflow_id
from workflows.timeouts import HEARTBEAT

START_SECONDS = 90.0
RETRY_WITHIN = 30.0
"""Well under the call's start-to-close (AI_REQUEST_TIMEOUT_SECONDS, a minute, and a margin), above HEARTBEAT."""


async def test_a_prototype_submitted_with_no_worker_is_accepted_kept_and_done_once_a_worker_polls(
    temporal: Client, engine: AsyncEngine, settings: Settings
) -> None:
    async with serve(create_app(settings, temporal=temporal)) as api:
        account = await sign_in(api, engine)
        accepted = await api.post("/api/ai/prototype", json=IDEA, headers=account["headers"])
        assert accepted.status_code == 202, accepted.text
        prototype_id = accepted.json()["prototype_id"]
        assert accepted.json()["status_url"] == f"/api/prototypes/{prototype_id}"
        waiting = await api.get(accepted.json()["status_url"], headers=account["headers"])
        assert (waiting.status_code, waiting.json()["status"]) == (200, "QUEUED")
        async with open_session(engine) as db:
            assert await db.get(Prototype, uuid.UUID(prototype_id)) is not None
        async with build_worker(temporal, settings, engine):
            done = await finished(api, temporal, account, prototype_id)
    assert done["status"] == "COMPLETED"


def plan_calls(fake_ai: FakeAIServer) -> list[Any]:
    """The calls of the pipeline's plan step (its second), the one these tests hold up."""
    plan_role = next(step.role for step in PIPELINE if step.name == "plan")
    return [call for call in fake_ai.calls_to("openai") if call.body["messages"][0]["content"] == plan_role]


async def test_a_model_call_on_a_killed_worker_is_retried_within_seconds(
    temporal_env: WorkflowEnvironment,
    temporal: Client,
    engine: AsyncEngine,
    ai_settings: Settings,
    fake_ai: FakeAIServer,
    tmp_path: Path,
) -> None:
    settings = ai_settings.model_copy(update={"ai_request_timeout_seconds": 60.0})  # the default: a 70 s timeout
    assert HEARTBEAT.total_seconds() < RETRY_WITHIN < settings.ai_request_timeout_seconds

    async def plan_asked(times: int) -> bool:
        return len(plan_calls(fake_ai)) >= times

    fake_ai.slow("openai", 0, 600)  # the plan step's first call hangs: the worker dies while it waits
    env = settings_env(settings, temporal_env.client.service_client.config.target_host)
    async with serve(create_app(settings, temporal=temporal)) as api:
        account = await sign_in(api, engine)
        with service_process(["-m", "worker"], env, tmp_path / "worker.log") as worker_process:
            prototype_id = await submit(api, account)
            await eventually(lambda: plan_asked(1), within=START_SECONDS, what="the plan call on the worker process")
            os.killpg(worker_process.pid, signal.SIGKILL)
            killed_at = time.monotonic()
            worker_process.wait()
        async with build_worker(temporal, settings, engine):
            await eventually(lambda: plan_asked(2), within=RETRY_WITHIN, what="the plan call's retry")
            retried_after = time.monotonic() - killed_at
            handle = temporal.get_workflow_handle_for(PrototypeWorkflow.run, workflow_id(uuid.UUID(prototype_id)))
            outcome = await handle.result()
    assert retried_after < RETRY_WITHIN
    assert outcome.status == PrototypeStatus.COMPLETED
    assert len(plan_calls(fake_ai)) == 2  # the call lost with the worker, and its one retry


async def test_a_worker_given_sigterm_finishes_its_running_model_call_and_exits_0(
    temporal_env: WorkflowEnvironment,
    temporal: Client,
    engine: AsyncEngine,
    ai_settings: Settings,
    fake_ai: FakeAIServer,
    tmp_path: Path,
) -> None:
    settings = ai_settings.model_copy(
        update={"ai_request_timeout_seconds": 30.0, "worker_shutdown_grace_seconds": 30.0}
    )
    call_seconds = 6.0
    assert call_seconds < settings.worker_shutdown_grace_seconds

    async def plan_asked() -> bool:
        return bool(plan_calls(fake_ai))

    fake_ai.slow("openai", 0, call_seconds)  # the plan step's call is in flight when SIGTERM comes
    env = settings_env(settings, temporal_env.client.service_client.config.target_host)
    async with serve(create_app(settings, temporal=temporal)) as api:
        account = await sign_in(api, engine)
        with service_process(["-m", "worker"], env, tmp_path / "worker.log") as worker_process:
            prototype_id = await submit(api, account)
            await eventually(plan_asked, within=START_SECONDS, what="the plan call on the worker process")
            worker_process.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(
                exit_code_within, worker_process, settings.worker_shutdown_grace_seconds + 15
            )
        log = (tmp_path / "worker.log").read_text()
        async with build_worker(temporal, settings, engine):  # the rest of the pipeline, on the next worker
            handle = temporal.get_workflow_handle_for(PrototypeWorkflow.run, workflow_id(uuid.UUID(prototype_id)))
            outcome = await handle.result()
    assert code == 0, log
    assert "worker stopped" in log
    assert outcome.status == PrototypeStatus.COMPLETED
    assert len(plan_calls(fake_ai)) == 1  # finished on the stopping worker, not cut and retried
