"""A user's data taken away (export) and forgotten (erasure), against the real stack: PostgreSQL, Temporal, the
worker, local storage, the outbox, and localstripe for a payment."""

from __future__ import annotations

import asyncio
import functools
import io
import json
import uuid
import zipfile
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fakes.stripe_emulator import SECRET_KEY, running_localstripe
from helpers import bearer, eventually, mark_verified, register_and_login
from payments_support import checkout, serve_http, with_gateway
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select
from temporalio import activity
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.erasure import TOMBSTONE_USER_ID, ErasureActivities, user_workflows
from activities.storage import build_storage, storage_key
from api.app import create_app
from models import search_attributes
from models.db import open_session
from models.enums import PaymentGateway, ServiceTier
from models.messages.privacy import ErasedRows, ErasureOrder, KeptPayments
from models.tables import (
    AIResponse,
    Contact,
    EmailDelivery,
    File,
    IdempotencyKey,
    Payment,
    Prototype,
    PrototypeRevision,
    Session,
    User,
)
from services.temporal import start_workflow
from settings import Settings
from worker import WORKFLOWS, activities_for, build_worker
from workflows.erasure import START_POLICY, ErasureWorkflow, KeptPaymentsWorkflow, erasure_id, purge_due, workflow_id

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(256)) * 4
IDEA = {"idea": "An app that books climbing gyms: members see free slots and reserve one."}


@pytest.fixture(scope="module")
def localstripe_url() -> Iterator[str]:
    with running_localstripe() as url:
        yield url


@pytest.fixture
def privacy_settings(settings: Settings, localstripe_url: str) -> Settings:
    return with_gateway(
        settings,
        stripe_secret_key=SecretStr(SECRET_KEY),
        stripe_webhook_secret=SecretStr("whsec_statex_test_secret"),
        stripe_api_base=localstripe_url,
        erasure_cancel_grace_seconds=3.0,
    )


@asynccontextmanager
async def api_only(settings: Settings, temporal: Client) -> AsyncIterator[httpx.AsyncClient]:
    """The API on a real port, and no worker: each test says when one runs."""
    async with (
        serve_http(create_app(settings, temporal=temporal)) as url,
        httpx.AsyncClient(base_url=url, timeout=60) as client,
    ):
        yield client


async def customer_with_data(http: httpx.AsyncClient, engine: AsyncEngine, *, prototype: bool = True) -> dict[str, Any]:
    """A signed-in customer whose address is verified, with an upload, a contact message sent from their address
    without signing in, a pending Stripe payment and (optionally) a finished offline prototype. Needs a worker."""
    account = await register_and_login(http)
    headers = bearer(account["access_token"])
    account |= {"id": uuid.UUID(account["user"]["id"]), "headers": headers}
    await mark_verified(engine, account["id"])
    uploaded = await http.post(
        "/api/files/upload", files={"file": (f"plan-{uuid.uuid4().hex[:6]}.png", PNG, "image/png")}, headers=headers
    )
    assert uploaded.status_code == 201, uploaded.text
    account["upload_id"] = uploaded.json()["fileId"]
    note = f"Message {uuid.uuid4().hex}"
    sent = await http.post("/api/contact", json={"name": "Ada", "email": account["email"], "message": note})
    assert sent.status_code in (200, 201, 202), sent.text
    account["message"] = note
    account["payment_id"] = (await checkout(http, account["access_token"], {"tier": "PREMIUM", "gateway": "STRIPE"}))[
        "payment"
    ]["id"]
    if prototype:
        accepted = await http.post("/api/ai/prototype", json=IDEA, headers=headers)
        assert accepted.status_code == 202, accepted.text
        account["prototype_id"] = accepted.json()["prototype_id"]

        async def completed() -> dict[str, Any] | None:
            view = (await http.get(f"/api/prototypes/{account['prototype_id']}", headers=headers)).json()
            return view if view["status"] == "COMPLETED" and view.get("file_id") else None

        done = await eventually(completed, within=60, what="the prototype")
        account["prototype_file_id"] = done["file_id"]
        account["prototype_picture_id"] = done["preview"]["file_id"] if done["preview"] else None
    return account


async def with_revision(engine: AsyncEngine, account: dict[str, Any]) -> dict[str, Any]:
    """A revision row of the customer's prototype (its workflow is not the point here: its row is)."""
    revision = PrototypeRevision(
        prototype_id=uuid.UUID(account["prototype_id"]), user_id=account["id"], number=1, feedback="Bigger buttons"
    )
    async with open_session(engine) as db:
        db.add(revision)
        await db.commit()
    return account | {"revision_id": str(revision.id)}


def unzip(content: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        return {name.removeprefix("statex-export/"): archive.read(name) for name in archive.namelist()}


@pytest.mark.slow
@pytest.mark.usefixtures("pictured")
async def test_the_export_holds_each_kind_of_the_users_data_and_nothing_of_another_user(
    privacy_settings: Settings, temporal: Client, engine: AsyncEngine
) -> None:
    async with build_worker(temporal, privacy_settings, engine), api_only(privacy_settings, temporal) as http:
        alice = await with_revision(engine, await customer_with_data(http, engine))
        bob = await customer_with_data(http, engine)
        started = await http.post("/api/me/export", headers=alice["headers"])
        assert started.status_code == 202, started.text
        export_id = started.json()["export_id"]
        assert started.json()["status_url"] == f"/api/me/exports/{export_id}"
        assert (await http.get(f"/api/me/exports/{export_id}", headers=bob["headers"])).status_code == 404

        async def done() -> dict[str, Any] | None:
            view = (await http.get(f"/api/me/exports/{export_id}", headers=alice["headers"])).json()
            return view if view["status"] != "RUNNING" else None

        view = await eventually(done, within=60, what="the export")
        assert view["status"] == "COMPLETED", view
        download = await http.get(view["download_url"], headers=alice["headers"])
        assert download.status_code == 200, download.text
        assert (await http.get(view["download_url"], headers=bob["headers"])).status_code == 404
        ready = privacy_settings.outbox_dir / f"export-{export_id}-ready.eml"
        assert await eventually(lambda: asyncio.sleep(0, ready.exists() or None), what="the export's email")
        assert f"/api/files/{view['file_id']}?token=" in ready.read_text()

    entries = unzip(download.content)
    everything = b"".join(entries.values())
    [account] = json.loads(entries["account.json"])
    assert account["email"] == alice["email"] and "password_hash" not in account
    sessions = json.loads(entries["sessions.json"])
    assert sessions and all("token_hash" not in session for session in sessions)
    assert [row["id"] for row in json.loads(entries["prototypes.json"])] == [alice["prototype_id"]]
    assert [row["id"] for row in json.loads(entries["prototype_revisions.json"])] == [alice["revision_id"]]
    calls = json.loads(entries["ai_requests.json"])
    assert calls and all(call["prototype_id"] == alice["prototype_id"] and "cost_usd_micros" in call for call in calls)
    assert [row["id"] for row in json.loads(entries["payments.json"])] == [alice["payment_id"]]
    assert [row["message"] for row in json.loads(entries["contact_messages.json"])] == [alice["message"]]
    files = {row["id"] for row in json.loads(entries["files.json"])}
    assert files == {alice["upload_id"], alice["prototype_file_id"], alice["prototype_picture_id"]}
    [upload] = [name for name in entries if name.startswith(f"files/{alice['upload_id']}/")]
    assert entries[upload] == PNG
    assert any(name.startswith(f"files/{alice['prototype_file_id']}/") for name in entries)
    for foreign in (bob["email"], bob["message"], str(bob["id"]), bob["payment_id"], bob["upload_id"]):
        assert foreign.encode() not in everything, foreign
    assert bob["prototype_id"].encode() not in everything


async def _holding_worker(
    temporal: Client, settings: Settings, engine: AsyncEngine, reached: asyncio.Event, clients: AsyncExitStack
) -> Worker:
    """A worker whose `delete_stored_objects` never finishes: the erasure stops there, mid-way."""
    registered = activities_for(settings, engine, clients, temporal=temporal)

    @activity.defn(name="delete_stored_objects")
    async def hold(user_id: uuid.UUID) -> int:
        reached.set()
        await asyncio.Event().wait()
        return 0

    held = [hold if getattr(found, "__name__", "") == "delete_stored_objects" else found for found in registered]
    assert hold in held
    return Worker(temporal, task_queue=settings.temporal_task_queue, workflows=list(WORKFLOWS), activities=held)


async def _rows_naming(engine: AsyncEngine, user_id: uuid.UUID, email: str) -> dict[str, int]:
    checks: dict[str, Any] = {
        "users": select(User).where(sa.or_(col(User.id) == user_id, col(User.email) == email)),
        "sessions": select(Session).where(col(Session.user_id) == user_id),
        "files": select(File).where(col(File.user_id) == user_id),
        "prototypes": select(Prototype).where(col(Prototype.user_id) == user_id),
        "prototype_revisions": select(PrototypeRevision).where(col(PrototypeRevision.user_id) == user_id),
        "ai_responses": select(AIResponse).where(col(AIResponse.user_id) == user_id),
        "payments": select(Payment).where(col(Payment.user_id) == user_id),
        "contacts": select(Contact).where(sa.or_(col(Contact.user_id) == user_id, col(Contact.email) == email)),
        "idempotency_keys": select(IdempotencyKey).where(col(IdempotencyKey.scope).contains(str(user_id))),
        "email_deliveries": select(EmailDelivery).where(col(EmailDelivery.recipient).contains(email)),
    }
    async with open_session(engine) as db:
        return {table: len((await db.exec(statement)).all()) for table, statement in checks.items()}


@pytest.mark.slow
@pytest.mark.usefixtures("pictured")
async def test_erasure_forgets_the_user_survives_a_worker_restart_and_runs_once(
    privacy_settings: Settings, temporal: Client, engine: AsyncEngine
) -> None:
    settings = privacy_settings
    async with api_only(settings, temporal) as http:
        async with build_worker(temporal, settings, engine):
            alice = await with_revision(engine, await customer_with_data(http, engine))
            bob = await customer_with_data(http, engine, prototype=False)
        async with open_session(engine) as db:
            keys = list((await db.exec(select(File.storage_key).where(col(File.user_id) == alice["id"]))).all())
        # The upload, the prototype's zip and its picture
        assert len(keys) == 3 and all((settings.files_dir / key).exists() for key in keys)
        assert storage_key(alice["prototype_picture_id"]) in keys
        # A prototype whose task queue has no worker: only a terminate after the cancel can close it.
        stranded = await temporal.start_workflow(
            "PrototypeWorkflow",
            id=f"prototype-{uuid.uuid4()}",
            task_queue=f"nobody-{uuid.uuid4().hex[:8]}",
            search_attributes=search_attributes.for_resource(uuid.uuid4(), alice["id"]),
        )
        checkout_handle = temporal.get_workflow_handle(f"payment-{alice['payment_id']}")
        closed_before = [
            found.id async for found in temporal.list_workflows(user_workflows(alice["id"], running=False))
        ]

        wrong = await http.request("DELETE", "/api/me", json={"password": "not it"}, headers=alice["headers"])
        assert wrong.status_code == 401, wrong.text

        reached = asyncio.Event()
        async with AsyncExitStack() as clients, await _holding_worker(temporal, settings, engine, reached, clients):
            erased = await http.request(
                "DELETE", "/api/me", json={"password": alice["password"]}, headers=alice["headers"]
            )
            assert erased.status_code == 202, erased.text
            assert erased.json()["erasure_id"] == workflow_id(alice["id"])
            await asyncio.wait_for(reached.wait(), 60)
            # Sessions are revoked already; signing in again and asking again joins the same erasure.
            assert (await http.get("/auth/me", headers=alice["headers"])).status_code == 401
            again = await http.post("/auth/login", json={"email": alice["email"], "password": alice["password"]})
            repeated = await http.request(
                "DELETE",
                "/api/me",
                json={"password": alice["password"]},
                headers=bearer(again.json()["access_token"]),
            )
            assert (repeated.status_code, repeated.json()) == (202, erased.json())
        # The worker stopped mid-erasure; a new one finishes it.
        async with build_worker(temporal, settings, engine):
            handle = temporal.get_workflow_handle_for(ErasureWorkflow.run, workflow_id(alice["id"]))
            progress = await asyncio.wait_for(handle.result(), 90)
            assert progress.finished
            # A second request after it finished finds the finished one and repeats nothing.
            order = ErasureOrder(user_id=alice["id"], keep_payments_years=10, cancel_grace=timedelta(seconds=3))
            second = await start_workflow(
                temporal,
                settings,
                ErasureWorkflow.run,
                order,
                id=workflow_id(alice["id"]),
                policy=START_POLICY,
                search_attributes=search_attributes.for_resource(erasure_id(alice["id"])),
                summary="again",
            )
            assert (await second.describe()).run_id == (await handle.describe()).run_id

        # No row names her, except the payment, kept and anonymised.
        assert await _rows_naming(engine, alice["id"], alice["email"]) == dict.fromkeys(
            ("users", "sessions", "files", "prototypes", "prototype_revisions", "ai_responses", "payments", "contacts"),
            0,
        ) | {"idempotency_keys": 0, "email_deliveries": 0}
        async with open_session(engine) as db:
            payment = await db.get(Payment, uuid.UUID(alice["payment_id"]))
            assert payment is not None and payment.user_id == TOMBSTONE_USER_ID
            assert payment.idempotency_key is None and set(payment.details or {}) == {"keep_until"}
            assert await db.get(File, uuid.UUID(bob["upload_id"])) is not None  # bob is untouched
        assert not any((settings.files_dir / key).exists() for key in keys)
        assert (settings.files_dir / storage_key(bob["upload_id"])).exists()
        assert (await http.get("/auth/me", headers=alice["headers"])).status_code == 401

        # Her workflows: the running ones stopped, and every history carrying her id deleted.
        async def deleted(workflow: str) -> bool | None:
            try:
                await temporal.get_workflow_handle(workflow).describe()
            except RPCError as err:
                return err.status == RPCStatusCode.NOT_FOUND or None
            return None  # the server deletes in the background

        for gone in (stranded.id, checkout_handle.id, *closed_before):
            # The server deletes in the background; one whose first task no worker ever took takes it ~35 s.
            await eventually(functools.partial(deleted, gone), within=90, what=f"{gone} to be deleted")

        async def histories_gone() -> bool | None:
            left = [found async for found in temporal.list_workflows(user_workflows(alice["id"], running=False))]
            return not left or None

        await eventually(histories_gone, what="her histories to leave visibility")

        # Her mail is gone from the outbox, but for the one confirmation.
        to_her = [path.name for path in settings.outbox_dir.glob("*.eml") if alice["email"] in path.read_text()]
        assert to_her == [f"erasure-{erasure_id(alice['id'])}-confirmed.eml"]
        assert any(bob["email"] in path.read_text() for path in settings.outbox_dir.glob("*.eml"))

        # The address is free again.
        registered = await http.post("/auth/register", json={"email": alice["email"], "password": "a new start 123"})
        assert registered.status_code == 202, registered.text
        signed_in = await http.post("/auth/login", json={"email": alice["email"], "password": "a new start 123"})
        me = await http.get("/auth/me", headers=bearer(signed_in.json()["access_token"]))
        assert me.json()["id"] != str(alice["id"]) and me.json()["email_verified_at"] is None


@pytest.mark.slow
async def test_erasure_finds_and_deletes_the_contact_workflows_sent_from_the_address_without_signing_in(
    privacy_settings: Settings, temporal: Client, engine: AsyncEngine
) -> None:
    settings = privacy_settings
    async with api_only(settings, temporal) as http, build_worker(temporal, settings, engine):
        alice = await register_and_login(http)
        alice_id = uuid.UUID(alice["user"]["id"])
        await mark_verified(engine, alice_id)
        other = f"someone-else-{uuid.uuid4().hex[:8]}@example.com"
        sent: dict[str, str] = {}
        for name, address in (("alice", alice["email"].upper()), ("other", other)):  # no Authorization: anonymous
            accepted = await http.post("/api/contact", json={"name": "Ada", "email": address, "message": "hello"})
            assert accepted.status_code == 202, accepted.text
            sent[name] = accepted.json()["workflow_id"]
            await temporal.get_workflow_handle(sent[name]).result()
        key = search_attributes.contact_key(settings, alice["email"])
        described = await temporal.get_workflow_handle(sent["alice"]).describe()
        attributes = described.typed_search_attributes
        assert (
            attributes.get(search_attributes.CONTACT_KEY) == key and attributes.get(search_attributes.USER_ID) is None
        )
        assert alice["email"].split("@")[0] not in key  # opaque: a keyed hash, not the address
        # One still running (no worker on its queue): erasure must stop it too.
        stranded = await temporal.start_workflow(
            "ContactWorkflow",
            id=f"contact-{uuid.uuid4()}",
            task_queue=f"nobody-{uuid.uuid4().hex[:8]}",
            search_attributes=search_attributes.for_resource(uuid.uuid4(), contact_key=key),
        )

        erased = await http.request(
            "DELETE", "/api/me", json={"password": alice["password"]}, headers=bearer(alice["access_token"])
        )
        assert erased.status_code == 202, erased.text
        handle = temporal.get_workflow_handle_for(ErasureWorkflow.run, workflow_id(alice_id))
        assert (await asyncio.wait_for(handle.result(), 90)).finished

    async def deleted(workflow: str) -> bool | None:
        try:
            await temporal.get_workflow_handle(workflow).describe()
        except RPCError as err:
            return err.status == RPCStatusCode.NOT_FOUND or None
        return None  # the server deletes in the background

    for gone in (sent["alice"], stranded.id):
        await eventually(functools.partial(deleted, gone), within=90, what=f"{gone} to be deleted")
    await temporal.get_workflow_handle(sent["other"]).describe()  # another sender's is untouched
    async with open_session(engine) as db:
        senders = (
            await db.exec(select(Contact.email).where(col(Contact.email).in_([alice["email"].upper(), other])))
        ).all()
    assert list(senders) == [other]


async def test_anonymised_payments_are_deleted_the_day_after_their_keeping_period_and_not_before(
    skipping: WorkflowEnvironment, settings: Settings, engine: AsyncEngine
) -> None:
    """KeptPaymentsWorkflow (which an erasure starts) on the time-skipping server, against the database."""
    users = [User(email=f"kept-{uuid.uuid4().hex[:8]}@example.com", password_hash="x") for _ in range(2)]
    payments = [
        Payment(
            user_id=user.id, amount_minor=1000, currency="EUR", gateway=PaymentGateway.STRIPE, tier=ServiceTier.PREMIUM
        )
        for user in users
    ]
    async with open_session(engine) as db:
        db.add_all(users)
        await db.flush()
        db.add_all(payments)
        await db.commit()
    erasure = ErasureActivities(skipping.client, build_storage(settings), engine, settings)
    counts = [
        await erasure.erase_rows(ErasedRows(user_id=user.id, email=user.email, keep_payments_years=years))
        for user, years in zip(users, (1, 2), strict=True)
    ]
    keep_until = counts[0].keep_until
    assert keep_until is not None and counts[1].keep_until is not None and counts[1].keep_until > keep_until

    async def kept() -> set[uuid.UUID]:
        async with open_session(engine) as db:
            found = await db.exec(select(Payment.id).where(col(Payment.id).in_([p.id for p in payments])))
            return set(found.all())

    async with build_worker(skipping.client, settings, engine):
        timer = await skipping.client.start_workflow(
            KeptPaymentsWorkflow.run,
            KeptPayments(erasure_id=uuid.uuid4(), keep_until=keep_until),
            id=f"kept-payments-{uuid.uuid4()}",
            task_queue=settings.temporal_task_queue,
        )
        await skipping.sleep(purge_due(keep_until) - await skipping.get_current_time() - timedelta(minutes=1))
        assert await kept() == {payment.id for payment in payments}  # kept through the last day
        await skipping.sleep(timedelta(minutes=2))
        assert await timer.result() >= 1
    assert await kept() == {payments[1].id}  # the one kept for two years is still there
