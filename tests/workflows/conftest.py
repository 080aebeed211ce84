"""Workflow tests with stubbed activities: no PostgreSQL, storage, gateway or model, only a Temporal test server.

Each test gets its own time-skipping server (`skipping`, from tests/conftest.py), so a 30-day refund window
or a 24-hour retention timer passes in milliseconds while the test waits on a result, and one test's clock
never moves another's. This directory has no __init__.py on purpose: as a package it would be named
`workflows` and shadow the real one.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from workflow_stubs import Outside


@dataclass(frozen=True)
class Stubbed:
    """A running worker with every real workflow and the stub activities, on a task queue of its own."""

    env: WorkflowEnvironment
    outside: Outside
    task_queue: str

    @property
    def client(self) -> Client:
        return self.env.client


@pytest.fixture
def outside() -> Outside:
    """The stubbed world; a test changes it (a provider down, storage down) before starting its workflow."""
    return Outside()


@pytest.fixture
async def stubbed(skipping: WorkflowEnvironment, outside: Outside) -> AsyncIterator[Stubbed]:
    task_queue = f"stubbed-{uuid.uuid4().hex[:8]}"
    async with outside.worker(skipping.client, task_queue):
        yield Stubbed(env=skipping, outside=outside, task_queue=task_queue)
