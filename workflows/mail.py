"""Sending one email from a workflow: the same activity options for every workflow that writes to people."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

from workflows.timeouts import HEARTBEAT

with workflow.unsafe.imports_passed_through():
    from activities.contact import ContactActivities
    from activities.email import EmailActivities
    from models.messages.contact import ContactEmail
    from models.messages.email import EmailMessage, EmailReceipt, UserEmail

# Bounded: a mailer down for longer than this, or a message it will never take, must not keep a workflow
# (and its customer's payment or prototype) waiting for ever. About 20 minutes of backed-off attempts.
EMAIL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2), maximum_interval=timedelta(minutes=5), maximum_attempts=8
)
EMAIL_DEADLINE = timedelta(minutes=30)

EMAIL_BY_USER_ID = "email-by-user-id"
"""The patch after which a workflow's emails to a customer go to the account's address, read by the activity;
runs begun before carry the address in their input and send to it."""


_Message = TypeVar("_Message", EmailMessage, ContactEmail, UserEmail)


async def send_email(message: EmailMessage, summary: str) -> EmailReceipt | None:
    """Retried within EMAIL_RETRY and EMAIL_DEADLINE; the message id makes a retry find the earlier send.
    None when the message could not be sent (logged): the caller records that and goes on, an email is never
    worth failing or stalling the work it reports on."""
    return await _bounded(EmailActivities.send_email, message, message.message_id, summary)


async def send_user_email(email: UserEmail, summary: str) -> EmailReceipt | None:
    """As send_email, to the account's address, which the activity reads: the workflow never holds it."""
    return await _bounded(EmailActivities.send_user_email, email, email.message_id, summary)


async def send_to_account(email: UserEmail, carried: str | None, summary: str) -> EmailReceipt | None:
    """To the account, through send_user_email; `carried` is the address a run begun before EMAIL_BY_USER_ID
    holds in its input (None for every later run), and such a run sends to it as it always did."""
    if carried is not None:
        return await send_email(email.addressed_to(carried), summary)
    return await send_user_email(email, summary)


async def send_contact_email(email: ContactEmail, summary: str) -> EmailReceipt | None:
    """As send_email, for a contact's email that the activity builds from the stored message."""
    return await _bounded(
        ContactActivities.send_contact_email, email, f"contact-{email.contact_id}-{email.kind}", summary
    )


async def _bounded(
    activity: Callable[[Any, _Message], Awaitable[EmailReceipt]], message: _Message, message_id: str, summary: str
) -> EmailReceipt | None:
    try:
        return await workflow.execute_activity_method(
            activity,
            message,
            start_to_close_timeout=timedelta(seconds=60),
            heartbeat_timeout=HEARTBEAT,
            schedule_to_close_timeout=EMAIL_DEADLINE,
            retry_policy=EMAIL_RETRY,
            summary=summary,
        )
    except ActivityError as err:
        workflow.logger.warning("email %s not sent: %s", message_id, err.cause or err)
        return None
