"""The contact form end to end: API -> ContactWorkflow -> email activity -> outbox or SES (moto)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import boto3
import httpx
import pytest
from conftest import AppFactory, executable
from helpers import eventually, png, serve
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ses.models import ses_backends
from payload_keys import CONVERTER
from pydantic import SecretStr
from servers import free_port
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from activities.email import EmailActivities, Mailer, OutboxMailer, SesMailer
from api.app import create_app
from models import search_attributes
from models.db import Database, hot_pool, open_session
from models.enums import ContactStatus
from models.messages.contact import ContactNotice, ContactProgress
from models.messages.email import EmailMessage, InlineImage, UserEmail
from models.tables import Contact, EmailDelivery, User
from services.errors import IdempotencyKeyInUse
from services.staging import staged
from settings import Settings
from worker import build_worker
from workflows.contact import ContactWorkflow

MESSAGE = {"name": "Ada Lovelace", "email": "ada@example.com", "message": "I have an idea for an app."}


def outbox_messages(folder: Path) -> dict[str, email.message.EmailMessage]:
    return {
        path.name: email.message_from_bytes(path.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
        for path in sorted(folder.glob("*.eml"))
    }


async def submit(
    api: httpx.AsyncClient, temporal: Client, body: dict[str, str]
) -> WorkflowHandle[ContactWorkflow, ContactProgress]:
    response = await api.post("/api/contact", json=body)
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["status"] == "RECEIVED"
    assert accepted["workflow_id"] == f"contact-{accepted['contact_id']}"
    return temporal.get_workflow_handle_for(ContactWorkflow.run, accepted["workflow_id"])


async def test_contact_message_reaches_team_and_sender(
    api: httpx.AsyncClient, worker: object, temporal: Client, settings: Settings, engine: AsyncEngine
) -> None:
    handle = await submit(api, temporal, {**MESSAGE, "subject": "Prototype", "phone": "+420 123 456 789"})
    progress = await handle.result()
    assert progress.team_notified and progress.sender_confirmed

    messages = outbox_messages(settings.outbox_dir)
    assert len(messages) == 2
    team = messages[f"contact-{progress.contact_id}-team.eml"]
    assert team["To"] == settings.email_team_address
    assert team["Reply-To"] == "ada@example.com"
    assert team["Subject"] == "Contact form: Prototype"
    assert "I have an idea for an app." in team.get_content()
    assert "+420 123 456 789" in team.get_content()
    confirmation = messages[f"contact-{progress.contact_id}-confirmation.eml"]
    assert confirmation["To"] == "ada@example.com"

    async with open_session(engine) as db:
        contact = await db.get(Contact, progress.contact_id)
        assert contact is not None and contact.status == ContactStatus.NOTIFIED and contact.notified_at
        deliveries = (
            await db.exec(select(EmailDelivery).where(EmailDelivery.message_id.startswith(f"contact-{contact.id}")))  # type: ignore[attr-defined]
        ).all()
    assert len(deliveries) == 2


async def test_contact_workflow_is_searchable_and_queryable(
    api: httpx.AsyncClient, worker: object, temporal: Client
) -> None:
    handle = await submit(api, temporal, MESSAGE)
    await handle.result()
    description = await handle.describe()
    contact_id = handle.id.removeprefix("contact-")
    assert description.typed_search_attributes.get(search_attributes.RESOURCE_ID) == contact_id
    progress = await handle.query(ContactWorkflow.progress)
    assert progress.sender_confirmed


class CountingMailer:
    """Wraps the real outbox: counts deliveries, and can hold one message until released."""

    name = "outbox"

    def __init__(self, inner: Mailer, hold_suffix: str | None = None) -> None:
        self.inner = inner
        self.hold_suffix = hold_suffix
        self.holding = asyncio.Event()
        self.delivered: Counter[str] = Counter()

    async def deliver(self, message: EmailMessage) -> str | None:
        if self.hold_suffix and message.message_id.endswith(self.hold_suffix):
            self.holding.set()
            await asyncio.Event().wait()  # until the worker is stopped and cancels us
        self.delivered[message.message_id] += 1
        return await self.inner.deliver(message)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_worker_restarted_mid_workflow_sends_each_email_once(
    api: httpx.AsyncClient, temporal: Client, settings: Settings, engine: AsyncEngine
) -> None:
    outbox = OutboxMailer(settings.outbox_dir, settings.email_from)
    first = CountingMailer(outbox, hold_suffix="-confirmation")
    async with build_worker(temporal, settings, engine, mailer=first):
        handle = await submit(api, temporal, MESSAGE)
        await asyncio.wait_for(first.holding.wait(), 20)  # the team email is out; the confirmation is in flight
    # the first worker is gone; a new one picks the workflow up where it stood
    second = CountingMailer(outbox)
    async with build_worker(temporal, settings, engine, mailer=second):
        progress = await asyncio.wait_for(handle.result(), 60)
    assert progress.sender_confirmed
    team_id, confirmation_id = (f"contact-{progress.contact_id}-{kind}" for kind in ("team", "confirmation"))
    assert first.delivered + second.delivered == Counter({team_id: 1, confirmation_id: 1})
    assert sorted(outbox_messages(settings.outbox_dir)) == [f"{confirmation_id}.eml", f"{team_id}.eml"]


async def test_a_retried_send_finds_the_earlier_delivery(settings: Settings, engine: AsyncEngine) -> None:
    mailer = CountingMailer(OutboxMailer(settings.outbox_dir, settings.email_from))
    activities = EmailActivities(mailer, engine)
    message = EmailMessage(message_id=f"retry-{uuid.uuid4().hex}", to=["x@example.com"], subject="s", text="t")
    first = await activities.send_email(message)
    again = await activities.send_email(message)
    assert mailer.delivered[message.message_id] == 1
    assert again == first


async def test_an_email_to_an_account_goes_to_its_stored_address_and_to_nobody_once_it_is_erased(
    settings: Settings, engine: AsyncEngine
) -> None:
    """Workflows hold the user's id only (send_user_email): the address is read when the email is sent, and an
    account erased meanwhile fails the email for good (the workflow logs it and goes on)."""
    activities = EmailActivities(OutboxMailer(settings.outbox_dir, settings.email_from), engine)
    address = f"reader-{uuid.uuid4().hex[:8]}@example.com"
    user = User(email=address, password_hash="x")
    user_id = user.id
    async with open_session(engine) as db:
        db.add(user)
        await db.commit()
    to_user = UserEmail(user_id=user_id, message_id=f"user-{user_id}", subject="s", text="t")
    await activities.send_user_email(to_user)
    assert outbox_messages(settings.outbox_dir)[f"{to_user.message_id}.eml"]["To"] == address

    erased = to_user.model_copy(update={"user_id": uuid.uuid4(), "message_id": f"erased-{uuid.uuid4().hex}"})
    with pytest.raises(ApplicationError) as refused:
        await activities.send_user_email(erased)
    assert (refused.value.type, refused.value.non_retryable) == ("AccountGone", True)
    assert f"{erased.message_id}.eml" not in outbox_messages(settings.outbox_dir)


async def test_outbox_never_overwrites_a_sent_message(settings: Settings) -> None:
    """A crash after writing but before recording: the retry finds the file and leaves it alone."""
    mailer = OutboxMailer(settings.outbox_dir, settings.email_from)
    message = EmailMessage(message_id="once", to=["x@example.com"], subject="first", text="t")
    await mailer.deliver(message)
    await mailer.deliver(message.model_copy(update={"subject": "second"}))
    assert outbox_messages(settings.outbox_dir)["once.eml"]["Subject"] == "first"
    assert [p.name for p in settings.outbox_dir.iterdir()] == ["once.eml"]


async def test_nothing_is_saved_when_temporal_is_unreachable(settings: Settings, engine: AsyncEngine) -> None:
    """Temporal goes down after the API started: the request fails clearly and leaves no orphan row."""
    doomed = await WorkflowEnvironment.start_local(
        port=free_port(), dev_server_existing_path=executable("temporal"), data_converter=CONVERTER, ui=False
    )
    sender = f"lost-{uuid.uuid4().hex[:8]}@example.com"
    async with serve(create_app(settings, temporal=doomed.client)) as api:
        await doomed.shutdown()
        response = await api.post("/api/contact", json={**MESSAGE, "email": sender})
    assert response.status_code == 503
    assert "nothing was saved" in response.json()["error"]
    async with open_session(engine) as db:
        assert (await db.exec(select(Contact).where(Contact.email == sender))).first() is None


# --- SES v2 through boto3 against a local moto server over HTTP ------------------------------------------


@pytest.fixture
def ses_settings(settings: Settings, moto_url: str) -> Settings:
    sender = f"sender-{uuid.uuid4().hex[:8]}@statex.example"
    configured = settings.model_copy(
        update={
            "email_backend": "ses",
            "email_from": sender,
            "ses_endpoint_url": moto_url,
            "aws_region": "eu-west-1",
            "aws_access_key_id": SecretStr("testing"),
            "aws_secret_access_key": SecretStr("testing"),
        }
    )
    client = boto3.client(
        "sesv2",
        endpoint_url=moto_url,
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_email_identity(EmailIdentity=sender)
    return configured


def ses_sent_to(sender: str) -> list[object]:
    backend = ses_backends[DEFAULT_ACCOUNT_ID]["eu-west-1"]
    return [m for m in backend.sent_messages if getattr(m, "source", None) == sender]


async def test_contact_through_ses(
    make_app: AppFactory, ses_settings: Settings, temporal: Client, engine: AsyncEngine
) -> None:
    app = make_app(**ses_settings.model_dump(include={"email_backend", "email_from"}))
    async with build_worker(temporal, ses_settings, engine), serve(app) as api:
        handle = await submit(api, temporal, MESSAGE)
        progress = await handle.result()

    async def sent_messages() -> list[object]:
        return ses_sent_to(ses_settings.email_from)

    sent = await eventually(sent_messages, what="SES messages")
    assert sorted(m.destinations["ToAddresses"][0] for m in sent) == sorted(  # type: ignore[attr-defined]
        ["ada@example.com", ses_settings.email_team_address]
    )
    async with open_session(engine) as db:
        delivery = await db.get(EmailDelivery, f"contact-{progress.contact_id}-team")
    assert delivery is not None and delivery.backend == "ses" and delivery.provider_message_id


async def test_ses_rejection_is_not_retried(ses_settings: Settings) -> None:
    unverified = ses_settings.model_copy(update={"email_from": "nobody@unverified.example"})
    with pytest.raises(ApplicationError) as raised:
        await SesMailer(unverified).deliver(
            EmailMessage(message_id="rejected", to=["x@example.com"], subject="s", text="t")
        )
    assert raised.value.non_retryable
    assert (raised.value.type, "MessageRejected" in raised.value.message) == ("EmailRefused", True)


async def test_a_retried_request_with_the_same_idempotency_key_sends_once(
    api: httpx.AsyncClient, worker: object, temporal: Client, settings: Settings
) -> None:
    headers = {"Idempotency-Key": f"form-{uuid.uuid4().hex}"}
    first = await api.post("/api/contact", json=MESSAGE, headers=headers)
    assert first.status_code == 202
    await temporal.get_workflow_handle(first.json()["workflow_id"]).result()
    retried = await api.post("/api/contact", json=MESSAGE, headers=headers)
    assert retried.status_code == 202
    assert retried.json()["contact_id"] == first.json()["contact_id"]
    assert retried.json()["status"] == "NOTIFIED"
    other = await api.post("/api/contact", json=MESSAGE, headers={"Idempotency-Key": "another"})
    assert other.json()["contact_id"] != first.json()["contact_id"]
    await temporal.get_workflow_handle(other.json()["workflow_id"]).result()
    assert len(outbox_messages(settings.outbox_dir)) == 4


@pytest.fixture(params=["SQLAlchemy", "hot pool"])
async def staging_database(
    request: pytest.FixtureRequest, engine: AsyncEngine, database_url: str
) -> AsyncIterator[Database]:
    """Inserts through SQLAlchemy (as on SQLite) or psycopg's hot pool (PostgreSQL): their errors differ."""
    database = Database(engine, hot_pool(database_url, 1) if request.param == "hot pool" else None)
    await database.open()
    try:
        yield database
    finally:
        await database.close()


async def test_two_requests_racing_with_one_idempotency_key_write_one_row(
    engine: AsyncEngine, staging_database: Database
) -> None:
    """The loser of the race gets a clear 409, not a 500; the winner's row and workflow stand."""
    contact_id = uuid.uuid4()

    def message() -> Contact:
        return Contact(id=contact_id, name="Ada", email="ada@example.com", message="hi")

    async with staged(staging_database, message()):  # the winner's row is committed; its workflow would start here
        with pytest.raises(IdempotencyKeyInUse) as refused:
            async with staged(staging_database, message()):
                pytest.fail("the loser must not get to start a workflow")
    assert refused.value.status == 409
    assert "Idempotency-Key is already in progress" in refused.value.message
    async with open_session(engine) as db:
        assert len((await db.exec(select(Contact).where(Contact.id == contact_id))).all()) == 1


async def test_a_row_whose_workflow_cannot_start_is_deleted_again(
    engine: AsyncEngine, staging_database: Database
) -> None:
    contact_id = uuid.uuid4()
    with pytest.raises(RuntimeError):
        async with staged(staging_database, Contact(id=contact_id, name="Ada", email="ada@example.com", message="hi")):
            async with open_session(engine) as db:
                assert await db.get(Contact, contact_id) is not None  # committed before the start
            raise RuntimeError("Temporal refused")
    async with open_session(engine) as db:
        assert await db.get(Contact, contact_id) is None


async def test_a_contact_whose_message_was_erased_before_its_email_sends_nothing_and_ends(
    worker: object, temporal: Client, settings: Settings
) -> None:
    """The workflow carries only the id: with the row gone (erased), there is nobody to write to, and no retry."""
    contact_id = uuid.uuid4()
    progress = await temporal.execute_workflow(
        ContactWorkflow.run,
        ContactNotice(contact_id=contact_id, team_address=settings.email_team_address),
        id=f"contact-{contact_id}",
        task_queue=settings.temporal_task_queue,
    )
    assert progress.failure and not progress.team_notified and not progress.sender_confirmed
    assert outbox_messages(settings.outbox_dir) == {}


async def test_an_email_showing_a_picture_goes_to_ses_as_the_whole_mime_message(ses_settings: Settings) -> None:
    """SES's simple content has no inline parts: a message with pictures is sent raw, as the outbox writes it."""
    picture = InlineImage(content_id="preview-1@statex.local", data=png())
    message = EmailMessage(
        message_id=f"pictured-{uuid.uuid4().hex[:8]}",
        to=["ada@example.com"],
        subject="Your prototype is ready",
        text="The picture: https://api.example/picture",
        html='<p><img src="cid:preview-1@statex.local" alt="the app"></p>',
        images=[picture],
    )
    assert await SesMailer(ses_settings).deliver(message)

    [sent] = ses_sent_to(ses_settings.email_from)
    raw = email.message_from_bytes(sent.raw_data.encode(), policy=email.policy.default)  # type: ignore[attr-defined]
    [image] = [part for part in raw.walk() if part.get_content_type() == "image/png"]
    assert (image["Content-ID"], image.get_payload(decode=True)) == ("<preview-1@statex.local>", png())
    assert "multipart/related" in [part.get_content_type() for part in raw.walk()]
