"""Stubs of the mailer's activities: an email to an address, to an account's owner, and an account email (the
activity looks the account up). Each answers a receipt, or fails retryably while `Outside.mailer_down`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from models.messages.accounts import AccountEmailRequest
from models.messages.email import EmailMessage, EmailReceipt, UserEmail
from stubs.base import Stubs


class EmailStubs(Stubs):
    def all(self) -> list[Callable[..., Any]]:
        return [self.send_email, self.send_user_email, self.send_account_email]

    @activity.defn(name="send_user_email")
    async def send_user_email(self, email: UserEmail) -> EmailReceipt:
        await self._note(email)
        if self.outside.mailer_down:
            raise ApplicationError("the mailer is unreachable", type="EmailServiceUnreachable")
        return EmailReceipt(
            message_id=email.message_id, backend="stub", provider_message_id=None, sent_at=datetime.now(UTC)
        )

    @activity.defn(name="send_account_email")
    async def send_account_email(self, request: AccountEmailRequest) -> EmailReceipt | None:
        await self._note(request)
        if self.outside.mailer_down:
            raise ApplicationError("the mailer is unreachable", type="EmailServiceUnreachable")
        return EmailReceipt(
            message_id=request.message_id, backend="stub", provider_message_id=None, sent_at=datetime.now(UTC)
        )

    @activity.defn(name="send_email")
    async def send_email(self, message: EmailMessage) -> EmailReceipt:
        await self._note(message)
        if self.outside.mailer_down:
            raise ApplicationError("the mailer is unreachable", type="EmailServiceUnreachable")
        return EmailReceipt(
            message_id=message.message_id, backend="stub", provider_message_id=None, sent_at=datetime.now(UTC)
        )
