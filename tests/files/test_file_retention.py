"""The 24-hour retention timer, on Temporal's time-skipping test server: deleted at 24 h, never earlier."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from helpers import bearer, register_and_login, serve
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from models.db import open_session
from models.tables import File
from settings import Settings
from worker import build_worker
from workflows.retention import FileRetentionWorkflow

PNG = b"\x89PNG\r\n\x1a\n" + bytes(200)


@pytest.fixture
async def api(skipping: WorkflowEnvironment, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    # The daily limits, the bound on uploads in flight and load shedding are other defences; these tests are
    # about the timer.
    unbounded = {"rate_limit_enabled": False, "uploads_per_user_at_once": 200, "api_max_concurrency": 1000}
    app = create_app(settings.model_copy(update=unbounded), temporal=skipping.client)
    async with serve(app) as http:
        yield http


async def upload(api: httpx.AsyncClient, token: str) -> str:
    response = await api.post("/api/files/upload", files={"file": ("a.png", PNG, "image/png")}, headers=bearer(token))
    assert response.status_code == 201, response.text
    return response.json()["fileId"]


def stored(settings: Settings, file_id: str) -> Path:
    return settings.files_dir / "uploads" / file_id


async def test_deleted_at_24_hours_not_at_23_59(
    api: httpx.AsyncClient, skipping: WorkflowEnvironment, settings: Settings, engine: AsyncEngine
) -> None:
    token = (await register_and_login(api))["access_token"]
    async with build_worker(skipping.client, settings, engine):
        file_id = await upload(api, token)
        await skipping.sleep(timedelta(hours=23, minutes=59))
        assert stored(settings, file_id).exists()
        assert (await api.get(f"/api/files/{file_id}", headers=bearer(token))).status_code == 200
        await skipping.sleep(timedelta(minutes=2))
        handle = skipping.client.get_workflow_handle_for(FileRetentionWorkflow.run, f"file-{file_id}")
        outcome = await handle.result()
    assert not outcome.deleted_early
    assert not stored(settings, file_id).exists()
    async with open_session(engine) as db:
        row = await db.get(File, uuid.UUID(file_id))
    assert row is not None and row.deleted_at is not None
    assert (await api.get(f"/api/files/{file_id}", headers=bearer(token))).status_code == 410


async def test_a_worker_restart_in_the_middle_changes_nothing(
    api: httpx.AsyncClient, skipping: WorkflowEnvironment, settings: Settings, engine: AsyncEngine
) -> None:
    token = (await register_and_login(api))["access_token"]
    # No sticky cache: the test server's frozen clock never lets a dead worker's sticky queue time out
    # (a real server hands the task to another worker after a few seconds).
    async with build_worker(skipping.client, settings, engine, max_cached_workflows=0):
        file_id = await upload(api, token)
        await skipping.sleep(timedelta(hours=12))
    await skipping.sleep(timedelta(hours=6))  # no worker at all for six hours
    async with build_worker(skipping.client, settings, engine):
        await skipping.sleep(timedelta(hours=5, minutes=59))
        assert stored(settings, file_id).exists()
        await skipping.sleep(timedelta(minutes=2))
        await skipping.client.get_workflow_handle_for(FileRetentionWorkflow.run, f"file-{file_id}").result()
    assert not stored(settings, file_id).exists()


async def test_the_owner_deletes_early(
    api: httpx.AsyncClient, skipping: WorkflowEnvironment, settings: Settings, engine: AsyncEngine
) -> None:
    token = (await register_and_login(api))["access_token"]
    async with build_worker(skipping.client, settings, engine):
        file_id = await upload(api, token)
        await skipping.sleep(timedelta(hours=1))
        response = await api.delete(f"/api/files/{file_id}", headers=bearer(token))
        assert response.status_code == 200
        assert response.json()["deleted"] is True
        handle = skipping.client.get_workflow_handle_for(FileRetentionWorkflow.run, f"file-{file_id}")
        status = await handle.query(FileRetentionWorkflow.status)
    assert status.deleted_early
    assert status.deleted_at is not None and status.deletes_at is not None
    assert not stored(settings, file_id).exists()


@pytest.mark.slow
async def test_two_hundred_files_uploaded_together_are_all_deleted_at_24_hours(
    api: httpx.AsyncClient, skipping: WorkflowEnvironment, settings: Settings, engine: AsyncEngine
) -> None:
    token = (await register_and_login(api))["access_token"]
    async with build_worker(skipping.client, settings, engine):
        file_ids = await asyncio.gather(*(upload(api, token) for _ in range(200)))
        assert len(set(file_ids)) == 200
        await skipping.sleep(timedelta(hours=23, minutes=59))
        assert all(stored(settings, file_id).exists() for file_id in file_ids)  # none early
        await skipping.sleep(timedelta(minutes=2))
        handles = [skipping.client.get_workflow_handle(f"file-{file_id}") for file_id in file_ids]
        await asyncio.gather(*(handle.result() for handle in handles))
    assert not any(stored(settings, file_id).exists() for file_id in file_ids)
