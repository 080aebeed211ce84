"""Sending one email from a workflow: the same activity options for every workflow that writes to people."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.email import EmailActivities
    from models.messages.email import EmailMessage, EmailReceipt

EMAIL_RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), maximum_interval=timedelta(minutes=5))


async def send_email(message: EmailMessage, summary: str) -> EmailReceipt:
    """Retried until the mailer takes it; the message id makes a retry find the earlier send."""
    return await workflow.execute_activity_method(
        EmailActivities.send_email,
        message,
        start_to_close_timeout=timedelta(seconds=60),
        retry_policy=EMAIL_RETRY,
        summary=summary,
    )
