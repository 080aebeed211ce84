"""Registration, the verification of an account's address, and password reset: the flows an address proves.

Registration and "forgot password" answer the same, in the same time, whether or not the address has an account:
each does the same work in the request (registration: bcrypt and one INSERT ... ON CONFLICT DO NOTHING; forgot:
nothing), and what differs (which email, or none) happens after the answer (the route's background tasks), where
it signals the account's AccountEmailWorkflow. That workflow sends each email once and no more often than
ACCOUNT_EMAIL_INTERVAL_SECONDS per kind; the per-IP limit of every open route applies too.

A verification link is signed for the address it was sent to; a reset code for the address and the password hash,
so setting a password ends every code issued before (single use, whichever comes first). The new password is set
by compare-and-swap on the old hash, so of concurrent uses of one code exactly one succeeds, and every session
of the account is revoked in the same transaction.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import col, select
from temporalio.common import WorkflowIDReusePolicy

from models import search_attributes
from models.api.auth import AddressVerified, EmailSent, RegisterRequest, RegistrationAccepted
from models.messages.accounts import AccountEmailKind, AccountEmailOrder
from models.tables import Session, User
from models.tokens import (
    AddressPurpose,
    InvalidToken,
    address_token_subject,
    address_token_valid,
    reset_binding,
    verify_binding,
)
from models.types import utcnow
from observability import metrics
from services.accounts import Account
from services.errors import BadRequest
from services.runtime import Service
from services.security import hash_password
from services.temporal import reaching_temporal, rpc_timeout
from workflows.account_email import AccountEmailWorkflow, workflow_id

log = logging.getLogger(__name__)

INVALID_LINK = "This verification code is invalid or has expired"
INVALID_CODE = "This reset code is invalid, has expired or was already used"
_IDLE = timedelta(hours=1)

AfterAnswer = Callable[..., None]
"""Schedules `work(*args)` to run once the answer is sent (the route passes its BackgroundTasks.add_task)."""


class AddressService(Service):
    async def register(self, body: RegisterRequest, after_answer: AfterAnswer) -> RegistrationAccepted:
        """A new account, usable at once, and a verification email; for an address that has an account, nothing
        but an email to it saying so. The same answer either way."""
        password_hash = await hash_password(body.password, self.settings.bcrypt_rounds)
        now = utcnow()
        user = User(email=body.email, name=body.name, password_hash=password_hash, created_at=now, updated_at=now)
        async with self.database.session() as db:
            dialect_insert = pg_insert if db.get_bind().dialect.name == "postgresql" else sqlite_insert
            statement = dialect_insert(User).values(**user.model_dump()).on_conflict_do_nothing()
            created = (await db.exec(statement.returning(col(User.id)))).first()  # type: ignore[call-overload]
            await db.commit()
        if created is not None:
            metrics.users_registered.inc()
            after_answer(_logged, self._ask(user.id, AccountEmailKind.VERIFY))
        else:
            after_answer(_logged, self._ask_by_address(body.email, AccountEmailKind.KNOWN))
        return RegistrationAccepted()

    async def resend_verification(self, account: Account) -> RegistrationAccepted:
        """Another verification email (at most one per interval; none once the address is verified)."""
        with reaching_temporal():
            await self._ask(account.id, AccountEmailKind.VERIFY)
        return RegistrationAccepted()

    async def verify(self, account: Account, token: str) -> AddressVerified:
        """The address the code was sent to is verified, if the code is the signed-in account's and the address
        still its own. Sending it again is harmless."""
        try:
            user_id, _ = address_token_subject(AddressPurpose.VERIFY, token)
        except InvalidToken as err:
            raise BadRequest(INVALID_LINK) from err
        if user_id != account.id:  # the inbox's reader, signed in as another account (or a code for another)
            raise BadRequest(INVALID_LINK)
        async with self.database.session() as db:
            user = await db.get(User, user_id)
            if user is None or not address_token_valid(
                self.settings, AddressPurpose.VERIFY, token, verify_binding(user.email)
            ):
                raise BadRequest(INVALID_LINK)
            email = user.email
            now = utcnow()
            await db.exec(  # type: ignore[call-overload]
                sa.update(User)
                .where(col(User.id) == user_id, col(User.email) == email, col(User.email_verified_at).is_(None))
                .values(email_verified_at=now, updated_at=now)
            )
            await db.commit()
        return AddressVerified(email=email)

    async def forgot(self, email: str, after_answer: AfterAnswer) -> EmailSent:
        """A reset code to the address if it has an account: looked up after the answer, so known and unknown
        addresses are answered alike and in the same time."""
        after_answer(_logged, self._ask_by_address(email, AccountEmailKind.RESET))
        return EmailSent()

    async def reset(self, token: str, password: str) -> None:
        """The new password, once per code; every session of the account revoked with it."""
        try:
            user_id, _ = address_token_subject(AddressPurpose.RESET, token)
        except InvalidToken as err:
            raise BadRequest(INVALID_CODE) from err
        async with self.database.session() as db:
            user = await db.get(User, user_id)
            current = (user.email, user.password_hash) if user is not None else None
        if current is None or not address_token_valid(
            self.settings, AddressPurpose.RESET, token, reset_binding(*current)
        ):
            raise BadRequest(INVALID_CODE)
        new_hash = await hash_password(password, self.settings.bcrypt_rounds)  # no connection held
        now = utcnow()
        async with self.database.session() as db:
            # Compare-and-swap on the hash the code was signed with: of concurrent uses, one changes it.
            swapped = await db.exec(  # type: ignore[call-overload]
                sa.update(User)
                .where(col(User.id) == user_id, col(User.email) == current[0], col(User.password_hash) == current[1])
                .values(
                    password_hash=new_hash,
                    updated_at=now,
                    # The code came to the address: whoever used it reads that inbox.
                    email_verified_at=sa.func.coalesce(col(User.email_verified_at), now),
                )
            )
            if swapped.rowcount != 1:
                await db.rollback()
                raise BadRequest(INVALID_CODE)
            revoked = await db.exec(  # type: ignore[call-overload]
                sa.update(Session)
                .where(col(Session.user_id) == user_id, col(Session.revoked_at).is_(None))
                .values(revoked_at=now, revoke_reason="password reset")
            )
            await db.commit()
        log.info("password reset; %d sessions revoked", revoked.rowcount, extra={"user_id": str(user_id)})

    async def _ask_by_address(self, email: str, kind: AccountEmailKind) -> None:
        async with self.database.session() as db:
            user_id = (await db.exec(select(User.id).where(User.email == email))).first()
        if user_id is not None:
            await self._ask(user_id, kind)

    async def _ask(self, user_id: uuid.UUID, kind: AccountEmailKind) -> None:
        order = AccountEmailOrder(
            user_id=user_id,
            link_base_url=self.settings.public_api_url,
            interval=timedelta(seconds=self.settings.account_email_interval_seconds),
            idle=max(_IDLE, timedelta(seconds=self.settings.account_email_interval_seconds)),
        )
        await self.temporal.start_workflow(
            AccountEmailWorkflow.run,
            order,
            id=workflow_id(user_id),
            task_queue=self.settings.temporal_task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            start_signal="ask",
            start_signal_args=[kind],
            search_attributes=search_attributes.for_resource(user_id, user_id),
            static_summary="An account's own emails",
            rpc_timeout=rpc_timeout(self.settings),
        )


async def _logged(work: Awaitable[None]) -> None:
    """A failure after the answer is logged, not raised (the answer is sent): the caller can ask again,
    registration's verification by a resend, a reset by another request."""
    try:
        await work
    except Exception as err:
        log.warning("an account email could not be asked for: %s", err, exc_info=err)
