"""An account's own emails: the verification link, the "you already have an account" notice, a reset code.

The address is read and the token signed here, when the email is sent, never in the workflow: its history holds
neither. Sent once per message id (EmailActivities.send_email); an account gone, or a verification asked for an
address already verified, sends nothing.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity

from activities.email import EmailActivities
from models.db import open_session
from models.messages.accounts import AccountEmailKind, AccountEmailRequest
from models.messages.email import EmailMessage, EmailReceipt
from models.tables import User
from models.tokens import AddressPurpose, reset_binding, sign_address_token, verify_binding
from models.types import utcnow
from settings import Settings


class AccountEmailActivities:
    def __init__(self, email: EmailActivities, engine: AsyncEngine, settings: Settings) -> None:
        self.email = email
        self.engine = engine
        self.settings = settings

    @activity.defn
    async def send_account_email(self, request: AccountEmailRequest) -> EmailReceipt | None:
        async with open_session(self.engine) as db:
            user = await db.get(User, request.user_id)
        if user is None or (request.kind == AccountEmailKind.VERIFY and user.email_verified_at is not None):
            return None
        message = self._message(request, user)
        return await self.email.send_email(message)

    def _message(self, request: AccountEmailRequest, user: User) -> EmailMessage:
        now = utcnow()
        base = request.link_base_url.rstrip("/")
        if request.kind == AccountEmailKind.VERIFY:
            expires = now + timedelta(hours=self.settings.email_verification_hours)
            token = sign_address_token(
                self.settings, AddressPurpose.VERIFY, user.id, int(expires.timestamp()), verify_binding(user.email)
            )
            subject = "Confirm your email address for Statex"
            text = (
                "Hello,\n\nplease confirm that this address is yours: signed in to your Statex account, send this "
                f'code to {base}/auth/verify (POST, JSON {{"token": ...}}) before {expires:%Y-%m-%d %H:%M} UTC:\n\n'
                f"{token}\n\nYour account works already; until the address is confirmed, nothing sent from it "
                "without signing in is linked to your account.\n\nIf you did not create a Statex account, ignore "
                "this email: without the account's password, nobody can use this code.\n\n-- The Statex team"
            )
        else:
            expires = now + timedelta(minutes=self.settings.password_reset_minutes)
            token = sign_address_token(
                self.settings,
                AddressPurpose.RESET,
                user.id,
                int(expires.timestamp()),
                reset_binding(user.email, user.password_hash),
            )
            how = (
                f"To set a new password, send this code with your new password to {base}/auth/password/reset "
                f'(POST, JSON {{"token": ..., "password": ...}}) before {expires:%Y-%m-%d %H:%M} UTC. It works '
                f"once, and signs out every device:\n\n{token}\n\n"
            )
            if request.kind == AccountEmailKind.KNOWN:
                subject = "You already have a Statex account"
                text = (
                    "Hello,\n\nsomeone, perhaps you, asked to create a Statex account with this address. It already "
                    "has one, so nothing was created or changed.\n\nIf you forgot your password: " + how +
                    "If it was not you, ignore this email.\n\n-- The Statex team"
                )  # fmt: skip
            else:
                subject = "Reset your Statex password"
                text = (
                    "Hello,\n\nsomeone, perhaps you, asked to reset the password of the Statex account of this "
                    "address. " + how + "If it was not you, ignore this email: your password stays as it is.\n\n"
                    "-- The Statex team"
                )  # fmt: skip
        return EmailMessage(message_id=request.message_id, to=[user.email], subject=subject, text=text)
