"""Payment gateways, one module each, behind one set of activities that CheckoutWorkflow calls.

Every gateway answers the same questions (create, status, capture, cancel, refund), so one workflow serves
them all; the payment's gateway picks the module. A gateway takes payments once its settings are set.
The Stripe module (and its SDK, the heaviest) is imported only where it is used: the API, which asks this
package whether a gateway is configured, loads it for a Stripe webhook only.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AsyncExitStack, aclosing
from datetime import timedelta
from typing import Any

from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.payment_records import PaymentRecords
from activities.payments import btcpay, comgate, paypal
from activities.payments.common import Gateway, GatewayFailure, WebhookNotice
from models.db import open_session
from models.enums import PaymentGateway
from models.messages.payments import CheckoutOrder, GatewayReference, GatewaySession, GatewayStatus
from models.tables import User
from settings import Settings


class GatewayNotConfigured(Exception):
    """This server has no keys for the gateway: it takes no checkouts and can verify none of its webhooks."""


def _secret(value: SecretStr | None) -> str:
    return value.get_secret_value() if value is not None else ""


def is_configured(settings: Settings, gateway: PaymentGateway) -> bool:
    return {
        PaymentGateway.STRIPE: bool(settings.stripe_secret_key),
        PaymentGateway.PAYPAL: bool(settings.paypal_client_id and settings.paypal_client_secret),
        PaymentGateway.CRYPTO_BTCPAY: bool(
            settings.btcpay_url and settings.btcpay_api_key and settings.btcpay_store_id
        ),
        PaymentGateway.COMGATE: bool(settings.comgate_merchant and settings.comgate_secret),
    }.get(gateway, False)


def build_gateway(settings: Settings, gateway: PaymentGateway) -> Gateway:
    if not is_configured(settings, gateway):
        raise GatewayNotConfigured(f"{gateway} is not configured on this server")
    if gateway == PaymentGateway.STRIPE:
        from activities.payments import stripe

        return stripe.StripeGateway(_secret(settings.stripe_secret_key), settings.stripe_api_base)
    if gateway == PaymentGateway.PAYPAL:
        return _paypal(settings)
    if gateway == PaymentGateway.CRYPTO_BTCPAY:
        return btcpay.BTCPayGateway(
            settings.btcpay_url or "", _secret(settings.btcpay_api_key), settings.btcpay_store_id or ""
        )
    return comgate.ComgateGateway(
        settings.comgate_api_base,
        settings.comgate_merchant or "",
        _secret(settings.comgate_secret),
        settings.comgate_test,
    )


def _paypal(settings: Settings) -> paypal.PayPalGateway:
    return paypal.PayPalGateway(
        settings.paypal_api_base,
        settings.paypal_client_id or "",
        _secret(settings.paypal_client_secret),
        settings.paypal_brand_name,
    )


def build_gateways(settings: Settings) -> dict[PaymentGateway, Gateway]:
    return {gateway: build_gateway(settings, gateway) for gateway in PaymentGateway if is_configured(settings, gateway)}


def expiry(settings: Settings, gateway: PaymentGateway) -> timedelta:
    """How long an unpaid payment stays open at this gateway before it is cancelled."""
    minutes = {
        PaymentGateway.STRIPE: settings.stripe_expiry_minutes,
        PaymentGateway.PAYPAL: settings.paypal_expiry_minutes,
        PaymentGateway.CRYPTO_BTCPAY: settings.btcpay_expiry_minutes,
        PaymentGateway.COMGATE: settings.comgate_expiry_minutes,
    }[gateway]
    return timedelta(minutes=minutes)


async def verify_webhook(
    settings: Settings, gateway: PaymentGateway, headers: Mapping[str, str], body: bytes
) -> WebhookNotice | None:
    """The verified event, None for an event type that does not concern payments; WebhookRejected if forged."""
    if gateway == PaymentGateway.STRIPE and settings.stripe_webhook_secret:
        from activities.payments import stripe

        secret = _secret(settings.stripe_webhook_secret)
        return stripe.verify_webhook(secret, settings.stripe_webhook_tolerance_seconds, headers, body)
    if gateway == PaymentGateway.PAYPAL and is_configured(settings, gateway) and settings.paypal_webhook_id:
        async with aclosing(_paypal(settings)) as paypal_gateway:  # the API builds it per webhook: closed here
            return await paypal_gateway.verify_webhook(settings.paypal_webhook_id, headers, body)
    if gateway == PaymentGateway.CRYPTO_BTCPAY and settings.btcpay_store_id and settings.btcpay_webhook_secret:
        secret, tolerance = _secret(settings.btcpay_webhook_secret), settings.btcpay_webhook_tolerance_seconds
        return btcpay.verify_webhook(secret, settings.btcpay_store_id, tolerance, headers, body)
    if gateway == PaymentGateway.COMGATE and is_configured(settings, gateway):
        return comgate.verify_webhook(settings.comgate_merchant or "", _secret(settings.comgate_secret), headers, body)
    raise GatewayNotConfigured(f"webhooks from {gateway} are not configured on this server")


class GatewayActivities:
    """Thin: each activity hands the call to the payment's gateway, which classifies its own errors."""

    def __init__(self, gateways: Mapping[PaymentGateway, Gateway], engine: AsyncEngine) -> None:
        self.gateways = gateways
        self.engine = engine

    def _gateway(self, gateway: PaymentGateway) -> Gateway:
        if gateway not in self.gateways:
            raise ApplicationError(
                f"{gateway} is not configured on this worker", type=GatewayFailure.NOT_CONFIGURED, non_retryable=True
            )
        return self.gateways[gateway]

    @activity.defn
    async def create_at_gateway(self, order: CheckoutOrder) -> GatewaySession:
        """The payer's address, which gateways ask for, is read here: the workflow's input carries only the user's
        id (runs begun before carry the address too)."""
        gateway = self._gateway(order.gateway)
        if order.email is None:
            async with open_session(self.engine) as db:
                user = await db.get(User, order.user_id)
            if user is None:
                raise ApplicationError(
                    f"user {order.user_id} is no longer stored", type="AccountGone", non_retryable=True
                )
            order = order.model_copy(update={"email": user.email})
        return await gateway.create(order)

    @activity.defn
    async def gateway_status(self, payment: GatewayReference) -> GatewayStatus:
        return await self._gateway(payment.gateway).status(payment)

    @activity.defn
    async def capture_at_gateway(self, payment: GatewayReference) -> GatewayStatus:
        return await self._gateway(payment.gateway).capture(payment)

    @activity.defn
    async def cancel_at_gateway(self, payment: GatewayReference) -> GatewayStatus:
        return await self._gateway(payment.gateway).cancel(payment)

    @activity.defn
    async def refund_at_gateway(self, payment: GatewayReference) -> GatewayStatus:
        return await self._gateway(payment.gateway).refund(payment)


def checkout_activities(settings: Settings, engine: AsyncEngine, clients: AsyncExitStack) -> list[Any]:
    """Everything CheckoutWorkflow calls but email: the gateways configured here, and the payment records.
    Each gateway's client is built once here and closed when `clients` closes (the worker's shutdown)."""
    built = build_gateways(settings)
    for gateway in built.values():
        clients.push_async_callback(gateway.aclose)
    gateways = GatewayActivities(built, engine)
    records = PaymentRecords(engine)
    return [
        gateways.create_at_gateway,
        gateways.gateway_status,
        gateways.capture_at_gateway,
        gateways.cancel_at_gateway,
        gateways.refund_at_gateway,
        records.payment_status,
        records.attach_gateway_object,
        records.complete_payment,
        records.fail_payment,
        records.refund_payment,
    ]
