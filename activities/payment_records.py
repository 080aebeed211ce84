"""The database writes of CheckoutWorkflow: idempotent, each a compare-and-set on the payment's status.

A user's tier is derived, not toggled: the highest tier among their COMPLETED payments (STANDARD if none).
Completing or refunding a payment recomputes it under a lock on the user's row, so two payments settling
at once cannot leave the tier of whichever committed last.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio import activity
from temporalio.exceptions import ApplicationError

from models.catalogue import catalogue
from models.db import open_session
from models.enums import PaymentStatus, ServiceTier
from models.messages.payments import GatewayObject
from models.tables import Payment, User
from models.types import utcnow
from observability import metrics


class PaymentRecords:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @activity.defn
    async def payment_status(self, payment_id: uuid.UUID) -> PaymentStatus:
        """The row is committed right after the workflow starts; until then this fails and is retried."""
        async with open_session(self.engine) as db:
            payment = await db.get(Payment, payment_id)
        if payment is None:
            raise ApplicationError(f"payment {payment_id} is not in the database (yet)", type="PaymentNotFound")
        return payment.status

    @activity.defn
    async def attach_gateway_object(self, attached: GatewayObject) -> None:
        """Keep the gateway's id (webhooks are matched on it) and the frontend's next step (GET shows it)."""
        details = {"next_action": attached.session.action.model_dump(mode="json", exclude_none=True)}
        async with open_session(self.engine) as db:
            await db.exec(  # type: ignore[call-overload]
                sa.update(Payment)
                .where(col(Payment.id) == attached.payment_id)
                .values(gateway_id=attached.session.gateway_id, details=details, updated_at=utcnow())
            )
            await db.commit()

    @activity.defn
    async def complete_payment(self, payment_id: uuid.UUID) -> None:
        await self._settle(payment_id, PaymentStatus.PENDING, PaymentStatus.COMPLETED, completed_at=utcnow())

    @activity.defn
    async def fail_payment(self, payment_id: uuid.UUID) -> None:
        await self._settle(payment_id, PaymentStatus.PENDING, PaymentStatus.FAILED)

    @activity.defn
    async def refund_payment(self, payment_id: uuid.UUID) -> None:
        await self._settle(payment_id, PaymentStatus.COMPLETED, PaymentStatus.REFUNDED, refunded_at=utcnow())

    async def _settle(
        self, payment_id: uuid.UUID, expected: PaymentStatus, new: PaymentStatus, **moments: object
    ) -> None:
        """Move the payment from `expected` to `new` (a retry finds it moved already), then fix the tier."""
        async with open_session(self.engine) as db:
            payment = await db.get(Payment, payment_id)
            if payment is None:
                raise ApplicationError(f"payment {payment_id} not found", type="PaymentNotFound", non_retryable=True)
            await db.exec(select(User).where(User.id == payment.user_id).with_for_update())
            moved = await db.exec(  # type: ignore[call-overload]
                sa.update(Payment)
                .where(col(Payment.id) == payment_id, col(Payment.status) == expected)
                .values(status=new, updated_at=utcnow(), **moments)
            )
            await _recompute_tier(db, payment.user_id)
            await db.commit()
        if moved.rowcount:  # a retry finds it moved already and counts nothing
            metrics.payments_settled.labels(payment.gateway.lower(), new.value).inc()
            activity.logger.info(
                "payment %s %s -> %s",
                payment_id,
                expected.value,
                new.value,
                extra={"payment_id": str(payment_id), "gateway": payment.gateway.lower(), "payment_status": new.value},
            )


async def _recompute_tier(db: AsyncSession, user_id: uuid.UUID) -> None:
    paid = await db.exec(
        select(Payment.tier).where(Payment.user_id == user_id, Payment.status == PaymentStatus.COMPLETED)
    )
    tier = max((ServiceTier(t) for t in paid.all()), key=catalogue().rank, default=ServiceTier.STANDARD)
    await db.exec(  # type: ignore[call-overload]
        sa.update(User).where(col(User.id) == user_id, col(User.tier) != tier).values(tier=tier, updated_at=utcnow())
    )
