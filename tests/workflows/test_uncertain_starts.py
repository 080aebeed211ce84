"""A start call that fails is not taken at its word: the API asks Temporal whether the workflow exists. One
whose answer was lost after Temporal took it keeps its row and answers 202; one Temporal never took answers
503 and leaves no row. The lost answer is made by a client interceptor, as a timeout after the server's
commit would lose it."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from helpers import register_and_login, serve
from payload_keys import CONVERTER
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select
from temporalio.client import Client, Interceptor, OutboundInterceptor, StartWorkflowInput, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from api.app import create_app
from models.db import open_session
from models.tables import Prototype
from settings import Settings
from workflows.prototype import workflow_id

IDEA = {"idea": "An app that books climbing gyms: members see free slots and reserve one."}


class FailingStarts(Interceptor):
    """Every start fails with `status`; with `reach_server`, only after Temporal has started the workflow."""

    def __init__(self, status: RPCStatusCode, *, reach_server: bool) -> None:
        self.status = status
        self.reach_server = reach_server

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        return _FailingStart(next, self)


class _FailingStart(OutboundInterceptor):
    def __init__(self, next: OutboundInterceptor, failing: FailingStarts) -> None:
        super().__init__(next)
        self.failing = failing

    async def start_workflow(self, input: StartWorkflowInput) -> WorkflowHandle[Any, Any]:
        if self.failing.reach_server:
            await super().start_workflow(input)
        raise RPCError("the answer was lost", self.failing.status, b"")


async def client_with(temporal: Client, interceptor: Interceptor) -> Client:
    return await Client.connect(
        temporal.service_client.config.target_host,
        namespace=temporal.namespace,
        data_converter=CONVERTER,
        interceptors=[interceptor],
    )


async def submit(settings: Settings, client: Client) -> tuple[httpx.Response, uuid.UUID]:
    """A prototype submitted through an API on `client`; the answer, and the account's id."""
    async with serve(create_app(settings, temporal=client)) as api:
        account = await register_and_login(api)
        headers = {"Authorization": f"Bearer {account['access_token']}"}
        return await api.post("/api/ai/prototype", json=IDEA, headers=headers), uuid.UUID(account["user"]["id"])


async def prototypes_of(engine: AsyncEngine, user_id: uuid.UUID) -> list[Prototype]:
    async with open_session(engine) as db:
        return list((await db.exec(select(Prototype).where(Prototype.user_id == user_id))).all())


async def test_a_start_whose_answer_was_lost_after_temporal_took_it_answers_202_and_keeps_its_row(
    temporal: Client, settings: Settings, engine: AsyncEngine
) -> None:
    lost = await client_with(temporal, FailingStarts(RPCStatusCode.DEADLINE_EXCEEDED, reach_server=True))
    accepted, user_id = await submit(settings, lost)
    assert accepted.status_code == 202, accepted.text
    prototype_id = uuid.UUID(accepted.json()["prototype_id"])
    assert accepted.json()["status_url"] == f"/api/prototypes/{prototype_id}"
    assert [row.id for row in await prototypes_of(engine, user_id)] == [prototype_id]
    await temporal.get_workflow_handle(workflow_id(prototype_id)).describe()  # it runs: NOT_FOUND would raise


async def test_a_start_temporal_never_took_answers_503_and_leaves_no_row(
    temporal: Client, settings: Settings, engine: AsyncEngine
) -> None:
    never = await client_with(temporal, FailingStarts(RPCStatusCode.DEADLINE_EXCEEDED, reach_server=False))
    refused, user_id = await submit(settings, never)
    assert refused.status_code == 503, refused.text
    assert "nothing was saved" in refused.json()["error"]
    assert await prototypes_of(engine, user_id) == []
