"""Email: Amazon SES v2 in production, a local outbox folder by default. Each message is sent once.

The message id is the idempotency key. A send is recorded in `email_deliveries`; a retried activity
finds the record and returns it instead of sending again. The outbox also names its file after the id
and never overwrites one, so even a crash between sending and recording cannot duplicate it there.
"""

from __future__ import annotations

import asyncio
import email.message
import email.utils
import os
import tempfile
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import boto_config
from activities.storage import Storage
from models.db import insert_if_absent, open_session
from models.messages.email import EmailMessage, EmailReceipt, InlineImage, StoredImage, UserEmail
from models.tables import EmailDelivery, User
from models.types import utcnow
from observability import metrics
from settings import Settings

# SES errors that another attempt cannot fix: bad addresses, unverified senders, a paused account.
_PERMANENT_SES_ERRORS = frozenset(
    {
        "MessageRejected",
        "MailFromDomainNotVerifiedException",
        "BadRequestException",
        "NotFoundException",
        "AccountSuspendedException",
        "SendingPausedException",
        "AccessDeniedException",
    }
)


class Mailer(Protocol):
    name: str

    async def deliver(self, message: EmailMessage) -> str | None:
        """Send the message; return the provider's message id, if it gives one."""

    async def aclose(self) -> None:
        """Release the client's connections: the worker does this on shutdown."""


class OutboxMailer:
    """Writes each message as an RFC 5322 `.eml` file into a folder: the embedded default."""

    name = "outbox"

    def __init__(self, folder: Path, sender: str) -> None:
        self.folder = folder
        self.sender = sender

    async def aclose(self) -> None:
        pass  # no client to close

    async def deliver(self, message: EmailMessage) -> str | None:
        return await asyncio.to_thread(self._write, message)

    def _write(self, message: EmailMessage) -> str:
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.folder / f"{message.message_id}.eml"
        if target.exists():
            return target.name
        mime = build_mime(message, self.sender)
        descriptor, temporary = tempfile.mkstemp(dir=self.folder, prefix=".sending-")
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(mime)
            os.link(temporary, target)  # atomic, and fails rather than overwrite an earlier send
        except FileExistsError:
            pass
        finally:
            os.unlink(temporary)
        return target.name


def build_mime(message: EmailMessage, sender: str) -> bytes:
    """The message as RFC 5322 bytes. A ValueError means it cannot be built (a header with a line break, say):
    no retry will change that."""
    mime = email.message.EmailMessage()
    mime["Message-ID"] = f"<{message.message_id}@statex.local>"
    mime["Date"] = email.utils.formatdate(localtime=False)
    mime["From"] = sender
    mime["To"] = ", ".join(message.to)
    if message.reply_to:
        mime["Reply-To"] = message.reply_to
    mime["Subject"] = message.subject
    mime.set_content(message.text)
    if message.html:
        mime.add_alternative(message.html, subtype="html")
        html = mime.get_body(preferencelist=("html",))
        assert html is not None  # just added
        for image in message.images:  # the HTML becomes multipart/related: it and the pictures it shows by Content-ID
            maintype, subtype = image.content_type.split("/")
            html.add_related(image.data, maintype, subtype, cid=f"<{image.content_id}>", disposition="inline")
    return mime.as_bytes()


class SesMailer:
    """Amazon SES v2 through boto3, one client per worker. boto3 is synchronous, so calls run in a thread."""

    name = "ses"

    def __init__(self, settings: Settings) -> None:
        self.sender = settings.email_from
        self.configuration_set = settings.ses_configuration_set
        import boto3  # here, not at the top: the API (which names this activity) and an outbox worker never load it

        self.client = boto3.client(
            "sesv2",
            region_name=settings.aws_region,
            endpoint_url=settings.ses_endpoint_url,
            aws_access_key_id=_secret(settings.aws_access_key_id),
            aws_secret_access_key=_secret(settings.aws_secret_access_key),
            config=boto_config(connect_timeout=5, read_timeout=20),
        )

    async def deliver(self, message: EmailMessage) -> str | None:
        from botocore.exceptions import BotoCoreError, ClientError

        request: dict[str, Any] = {
            "FromEmailAddress": self.sender,
            "Destination": {"ToAddresses": message.to},
            "Content": {"Simple": {"Subject": _utf8(message.subject), "Body": {"Text": _utf8(message.text)}}},
        }
        if message.images:  # pictures shown in place: the whole MIME message, as the outbox writes it
            request["Content"] = {"Raw": {"Data": build_mime(message, self.sender)}}
        elif message.html:
            request["Content"]["Simple"]["Body"]["Html"] = _utf8(message.html)
        if message.reply_to:
            request["ReplyToAddresses"] = [message.reply_to]
        if self.configuration_set:
            request["ConfigurationSetName"] = self.configuration_set
        try:
            response = await asyncio.to_thread(self.client.send_email, **request)
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "Unknown")
            raise ApplicationError(
                f"SES refused the message: {code}: {err}",
                type="EmailRefused",
                non_retryable=code in _PERMANENT_SES_ERRORS,
            ) from err
        except BotoCoreError as err:  # connection and timeout errors: worth another attempt
            raise ApplicationError(f"SES unreachable: {err}", type="EmailServiceUnreachable") from err
        return response.get("MessageId")

    async def aclose(self) -> None:
        self.client.close()


def _utf8(text: str) -> dict[str, str]:
    return {"Data": text, "Charset": "UTF-8"}


def _secret(value: Any) -> str | None:
    return value.get_secret_value() if value is not None else None


def build_mailer(settings: Settings) -> Mailer:
    if settings.email_backend == "ses":
        return SesMailer(settings)
    return OutboxMailer(settings.outbox_dir, settings.email_from)


class EmailActivities:
    def __init__(self, mailer: Mailer, engine: AsyncEngine, storage: Storage | None = None) -> None:
        """`storage`: where the pictures emails show in place are read from (none: sent without them)."""
        self.mailer = mailer
        self.engine = engine
        self.storage = storage

    @activity.defn
    async def send_email(self, message: EmailMessage) -> EmailReceipt:
        """Send once: a retry finds the earlier delivery by message id and returns its receipt. A message that
        cannot be built is a non-retryable failure: another attempt would fail the same way."""
        async with open_session(self.engine) as db:
            if (earlier := await db.get(EmailDelivery, message.message_id)) is not None:
                return _receipt(earlier)
        try:
            build_mime(message, "check@statex.local")  # every backend refuses what the outbox could not write
            provider_id = await self.mailer.deliver(message)
        except ValueError as err:
            metrics.emails.labels(self.mailer.name, "failed").inc()
            raise ApplicationError(
                f"The message cannot be built: {err}", type="EmailUnbuildable", non_retryable=True
            ) from err
        except Exception:
            metrics.emails.labels(self.mailer.name, "failed").inc()  # each failed attempt
            raise
        metrics.emails.labels(self.mailer.name, "sent").inc()
        activity.logger.info("email %s sent through %s", message.message_id, self.mailer.name)  # no address: personal
        delivery = EmailDelivery(
            message_id=message.message_id,
            recipient=", ".join(message.to)[:320],
            subject=message.subject[:300],
            backend=self.mailer.name,
            provider_message_id=provider_id,
            sent_at=utcnow(),
        )
        async with open_session(self.engine) as db:
            await insert_if_absent(db, EmailDelivery, delivery.model_dump())
            await db.commit()
            recorded = await db.get(EmailDelivery, message.message_id)
        return _receipt(recorded or delivery)

    @activity.defn
    async def send_user_email(self, email: UserEmail) -> EmailReceipt:
        """To the account's address, read now; sent once, as send_email. An account erased in the meantime fails
        the email for good: there is nobody left to write to."""
        async with open_session(self.engine) as db:
            user = await db.get(User, email.user_id)
        if user is None:
            raise ApplicationError(f"user {email.user_id} is no longer stored", type="AccountGone", non_retryable=True)
        return await self.send_email(email.addressed_to(user.email, await self._read(email.images)))

    async def _read(self, images: list[StoredImage]) -> list[InlineImage]:
        """The pictures as storage holds them; one already deleted (its file expired, the account erased) is left
        out, and the HTML shows its alternative text instead."""
        if self.storage is None:
            return []
        storage, found = self.storage, []
        for image in images:
            try:
                data = b"".join([chunk async for chunk in await storage.open(image.storage_key)])
            except FileNotFoundError:
                continue
            found.append(InlineImage(content_id=image.content_id, content_type=image.content_type, data=data))
        return found


def _receipt(delivery: EmailDelivery) -> EmailReceipt:
    return EmailReceipt(
        message_id=delivery.message_id,
        backend=delivery.backend,
        provider_message_id=delivery.provider_message_id,
        sent_at=delivery.sent_at,
    )
