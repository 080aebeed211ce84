"""What the AI tests share: the worker and the API together, signed-in users of a given service tier, and
reading what a prototype left behind (its calls, its email, its zip)."""

from __future__ import annotations

import io
import uuid
import zipfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from helpers import bearer, eventually, png, register_and_login, serve
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select
from temporalio.client import Client, WorkflowFailureError

from activities.sandbox import Sandbox
from api.app import create_app
from models.db import open_session
from models.enums import PrototypeStatus, ServiceTier
from models.messages.prototypes import PreviewImage, VerificationRequest, VerificationResult
from models.tables import AIResponse, User
from settings import Settings
from worker import build_worker
from workflows.prototype import workflow_id


@asynccontextmanager
async def service(temporal: Client, engine: AsyncEngine, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The worker and the API, on the same settings."""
    async with build_worker(temporal, settings, engine), serve(create_app(settings, temporal=temporal)) as api:
        yield api


async def sign_in(api: httpx.AsyncClient, engine: AsyncEngine, tier: ServiceTier = ServiceTier.STANDARD) -> Any:
    account = await register_and_login(api)
    account["id"] = uuid.UUID(account["user"]["id"])
    account["headers"] = bearer(account["access_token"])
    if tier != ServiceTier.STANDARD:
        async with open_session(engine) as db:
            await db.exec(sa.update(User).where(col(User.id) == account["id"]).values(tier=tier))  # type: ignore[call-overload]
            await db.commit()
    return account


async def finished(api: httpx.AsyncClient, temporal: Client, account: dict[str, Any], prototype_id: str) -> Any:
    """Long-poll the status URL, as the frontend does, until the prototype is COMPLETED or FAILED; then wait for
    its workflow to close too (the email goes out just after the row is marked). A long poll is one request for
    seconds of waiting: quick polls of a pipeline slowed by a busy machine met the user's daily request limit."""

    async def settled() -> dict[str, Any] | None:
        polled = await api.get(f"/api/prototypes/{prototype_id}", params={"wait": 5}, headers=account["headers"])
        assert polled.status_code == 200, polled.text
        view = polled.json()
        return view if view["status"] in (PrototypeStatus.COMPLETED, PrototypeStatus.FAILED) else None

    view = await eventually(settled, within=60, what=f"prototype {prototype_id} to finish")
    with suppress(WorkflowFailureError):
        await temporal.get_workflow_handle(workflow_id(uuid.UUID(prototype_id))).result()
    return view


async def calls_of(engine: AsyncEngine, prototype_id: str) -> list[AIResponse]:
    async with open_session(engine) as db:
        statement = select(AIResponse).where(AIResponse.prototype_id == uuid.UUID(prototype_id))
        return sorted((await db.exec(statement)).all(), key=lambda row: row.created_at)


def outbox(settings: Settings) -> list[Path]:
    """The outbox's emails but the accounts' own (verification links, sent on registration)."""
    found = sorted(settings.outbox_dir.glob("*.eml")) if settings.outbox_dir.exists() else []
    return [path for path in found if not path.name.startswith("account-")]


def body_of(email: Path) -> str:
    """The email's text (its plain part, when an HTML alternative shows a picture)."""
    message = BytesParser(policy=policy.default).parsebytes(email.read_bytes())
    assert isinstance(message, EmailMessage)
    text = message.get_body(preferencelist=("plain",))
    assert text is not None
    return str(text.get_content())


def unzip(content: bytes) -> dict[str, str]:
    """The zip's text entries (the picture, PREVIEW.png, aside)."""
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        return {
            name.removeprefix("prototype/"): archive.read(name).decode()
            for name in archive.namelist()
            if not name.endswith(".png")
        }


class ReturnedConnections:
    """Counts the units of work (sessions and reads) of an app's Database that have given their connection
    back: a request that waits on the network must have returned its own before it waits."""

    def __init__(self, database: Any) -> None:
        self.count = 0
        sessions_of, reads_of = database.session, database.read

        @asynccontextmanager
        async def counted_session() -> AsyncIterator[Any]:
            async with sessions_of() as session:
                yield session
            self.count += 1

        @asynccontextmanager
        async def counted_read() -> AsyncIterator[Any]:
            async with reads_of() as connection:
                yield connection
            self.count += 1

        database.session, database.read = counted_session, counted_read


PICTURE = png(16, 10)
"""The picture `picture_passing_verdicts` gives: small, real, two colours."""


def picture_passing_verdicts(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sandbox's verdicts as they are, with PICTURE when the checks pass (what a browser on the worker adds):
    what is delivered can then be checked byte for byte, whatever browser this machine has."""
    verify = Sandbox.verify

    def verify_and_picture(self: Sandbox, request: VerificationRequest) -> VerificationResult:
        verdict = verify(self, request)
        if not verdict.passed:
            return verdict
        picture = PreviewImage(png=PICTURE, width=16, height=10)
        return verdict.model_copy(update={"app_started": True, "preview": picture, "preview_unavailable": None})

    monkeypatch.setattr(Sandbox, "verify", verify_and_picture)
