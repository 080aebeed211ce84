"""Nothing is linked to an account by its address until the address is verified, and then only the messages that
were sent from it by nobody signed in: never another account's own rows.

Without the verification each test fails: the export holds the anonymous sender's message, and the erasure
deletes another account's signed-in message that names the address.
"""

from __future__ import annotations

import asyncio
import functools
import io
import json
import uuid
import zipfile
from typing import Any

import httpx
import pytest
from helpers import bearer, eventually, mark_verified, new_email
from payments_support import serve_http
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from api.app import create_app
from models.db import open_session
from models.tables import Contact
from settings import Settings
from worker import build_worker
from workflows.erasure import ErasureWorkflow, workflow_id


async def signed_up(http: httpx.AsyncClient, email: str, password: str = "correct horse battery") -> dict[str, Any]:
    registered = await http.post("/auth/register", json={"email": email, "password": password})
    assert registered.status_code in (201, 202), registered.text
    tokens = await http.post("/auth/login", json={"email": email, "password": password})
    assert tokens.status_code == 200, tokens.text
    headers = bearer(tokens.json()["access_token"])
    me = (await http.get("/auth/me", headers=headers)).json()
    return {"email": email, "password": password, "id": uuid.UUID(me["id"]), "headers": headers}


async def contact(http: httpx.AsyncClient, address: str, note: str, headers: dict[str, str] | None = None) -> str:
    sent = await http.post(
        "/api/contact", json={"name": "Dana", "email": address, "phone": "+420777000111", "message": note},
        headers=headers or {},
    )  # fmt: skip
    assert sent.status_code == 202, sent.text
    return str(sent.json()["workflow_id"])


async def exported_messages(http: httpx.AsyncClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    started = await http.post("/api/me/export", headers=headers)
    assert started.status_code == 202, started.text

    async def done() -> dict[str, Any] | None:
        view = (await http.get(started.json()["status_url"], headers=headers)).json()
        return view if view["status"] != "RUNNING" else None

    view = await eventually(done, within=60, what="the export")
    assert view["status"] == "COMPLETED", view
    download = await http.get(view["download_url"], headers=headers)
    with zipfile.ZipFile(io.BytesIO(download.content)) as archive:
        rows: list[dict[str, Any]] = json.loads(archive.read("statex-export/contact_messages.json"))
    return rows


@pytest.mark.slow
async def test_registering_someone_elses_address_exports_nothing_of_theirs_until_verified(
    settings: Settings, temporal: Client, engine: AsyncEngine
) -> None:
    dana = new_email()
    async with (
        build_worker(temporal, settings, engine),
        serve_http(create_app(settings, temporal=temporal)) as url,
        httpx.AsyncClient(base_url=url, timeout=60) as http,
    ):
        secret = f"Dana's private note {uuid.uuid4().hex}"
        await contact(http, dana, secret)  # Dana, not signed in, has no account
        frank = await signed_up(http, new_email())
        franks = f"Frank names the address {uuid.uuid4().hex}"
        await contact(http, dana, franks, headers=frank["headers"])  # a signed-in third party naming it

        mallory = await signed_up(http, dana.upper())  # any case: the same address
        assert await exported_messages(http, mallory["headers"]) == []

        # Once the address is verified (its holder is Dana after all), her anonymous message is hers; Frank's
        # signed-in message naming it never is.
        await mark_verified(engine, mallory["id"])
        rows = await exported_messages(http, mallory["headers"])
        assert [row["message"] for row in rows] == [secret]
        assert [row["message"] for row in await exported_messages(http, frank["headers"])] == [franks]


async def deleted(temporal: Client, workflow: str) -> bool | None:
    try:
        await temporal.get_workflow_handle(workflow).describe()
    except RPCError as err:
        return err.status == RPCStatusCode.NOT_FOUND or None
    return None  # the server deletes in the background


@pytest.mark.slow
async def test_erasure_keeps_another_accounts_row_and_an_unverified_address_erases_nobody_elses(
    settings: Settings, temporal: Client, engine: AsyncEngine
) -> None:
    settings = settings.model_copy(update={"erasure_cancel_grace_seconds": 3.0})
    async with (
        build_worker(temporal, settings, engine),
        serve_http(create_app(settings, temporal=temporal)) as url,
        httpx.AsyncClient(base_url=url, timeout=60) as http,
    ):
        eve = await signed_up(http, new_email())
        await mark_verified(engine, eve["id"])
        frank = await signed_up(http, new_email())
        franks = await contact(http, eve["email"], "Frank about Eve", headers=frank["headers"])
        eves_anonymous = await contact(http, eve["email"].upper(), "Eve, not signed in")
        dana = new_email()
        danas = await contact(http, dana, "Dana, not signed in")
        mallory = await signed_up(http, dana)  # never verified
        for workflow in (franks, eves_anonymous, danas):
            await temporal.get_workflow_handle(workflow).result()

        for who in (eve, mallory):
            erased = await http.request("DELETE", "/api/me", json={"password": who["password"]}, headers=who["headers"])
            assert erased.status_code == 202, erased.text
            handle = temporal.get_workflow_handle_for(ErasureWorkflow.run, workflow_id(who["id"]))
            assert (await asyncio.wait_for(handle.result(), 90)).finished

        # Frank's own message naming Eve's address is his: its row, its workflow, his export.
        assert [row["message"] for row in await exported_messages(http, frank["headers"])] == ["Frank about Eve"]
    async with open_session(engine) as db:
        left = set((await db.exec(select(Contact.message).where(col(Contact.email).in_([eve["email"], dana])))).all())
        upper = (await db.exec(select(Contact.id).where(col(Contact.email) == eve["email"].upper()))).all()
    assert left == {"Frank about Eve", "Dana, not signed in"}
    assert list(upper) == []  # Eve's own anonymous message, from her verified address, is gone
    await eventually(functools.partial(deleted, temporal, eves_anonymous), within=90, what="Eve's contact workflow")
    for kept in (franks, danas):
        await temporal.get_workflow_handle(kept).describe()
    # Dana's and Frank's confirmation emails are theirs: still in the outbox.
    outbox = {path.name for path in settings.outbox_dir.glob("*.eml")}
    for workflow in (franks, danas):
        contact_id = workflow.removeprefix("contact-")
        assert f"contact-{contact_id}-confirmation.eml" in outbox, outbox
