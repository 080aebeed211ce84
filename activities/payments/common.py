"""What every gateway module shares: the Gateway interface, webhook outcomes, and HTTP error classification."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from temporalio.exceptions import ApplicationError

from models.messages.payments import CheckoutOrder, GatewayEvent, GatewayReference, GatewaySession, GatewayStatus

if TYPE_CHECKING:
    import httpx

# Statuses another attempt may fix: timeouts, conflicts (an idempotent request still in flight), rate
# limits and the gateway's own failures. Every other 4xx says the request itself is wrong.
_RETRYABLE_HTTP = frozenset({408, 409, 425, 429})
HTTP_TIMEOUT_SECONDS, CONNECT_TIMEOUT_SECONDS = 20.0, 5.0


class GatewayFailure(StrEnum):
    """The ApplicationError types of the gateway activities; the gateway, its status or code is in the message."""

    UNREACHABLE = "GatewayUnreachable"  # no answer (connection refused, a timeout): retried
    ERROR = "GatewayError"  # an error answer: retried or not as its status or code says
    NOT_CONFIGURED = "GatewayNotConfigured"
    CAPTURE_NOT_FOUND = "CaptureNotFound"  # a refund of an order that was never captured
    REFUND_FAILED = "RefundFailed"


def gateway_http(base_url: str, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
    """One pooled client per gateway for the life of the worker: its connections are reused across calls.
    httpx's transport does not retry (retries=0 is its default): Temporal retries the activity. httpx is
    imported here, not at the top: the API imports the gateway modules (webhooks, capabilities) and only
    loads an HTTP client when it builds a gateway."""
    import httpx

    timeout = httpx.Timeout(HTTP_TIMEOUT_SECONDS, connect=CONNECT_TIMEOUT_SECONDS)
    return httpx.AsyncClient(base_url=base_url, headers=headers, timeout=timeout)


class Gateway(Protocol):
    """One payment gateway. Each call is idempotent at the gateway, keyed by our payment id."""

    label: str

    async def create(self, order: CheckoutOrder) -> GatewaySession:
        """Create the gateway's object for this payment and say what the frontend does next."""

    async def status(self, payment: GatewayReference) -> GatewayStatus:
        """Read the payment's state from the gateway (webhooks get lost)."""

    async def capture(self, payment: GatewayReference) -> GatewayStatus:
        """Collect an approved payment, where the gateway needs that (PayPal); others report the status."""

    async def cancel(self, payment: GatewayReference) -> GatewayStatus:
        """Stop an unpaid payment; the state afterwards, which is PAID if the customer paid just in time."""

    async def refund(self, payment: GatewayReference) -> GatewayStatus:
        """Return the whole amount to the customer."""

    async def aclose(self) -> None:
        """Close the gateway's HTTP client (its pooled connections): the worker does this on shutdown."""


class WebhookRejected(Exception):
    """Forged, stale or malformed: answered 400 and nothing is signalled."""


@dataclass(frozen=True)
class WebhookNotice:
    """A verified webhook: the event for the workflow, and how to find the payment (our id or the gateway's)."""

    event: GatewayEvent
    payment_id: uuid.UUID | None = None
    gateway_id: str | None = None
    amount_minor: int | None = None
    """The amount the gateway's object is for, in minor units (Stripe), where the event says it."""
    amount: Decimal | None = None
    """The same as a decimal amount ("29.00"), for gateways that send it so (PayPal)."""
    currency: str | None = None
    """The amount's currency, upper case, where the event says it."""


def payment_id_from(value: object) -> uuid.UUID | None:
    """Our payment id as the gateway echoes it back (metadata, reference ids); None if it is not one."""
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def http_failure(label: str, response: httpx.Response) -> ApplicationError:
    retryable = response.status_code in _RETRYABLE_HTTP or response.status_code >= 500
    return ApplicationError(
        f"{label} answered {response.status_code}: {response.text[:500]}",
        type=GatewayFailure.ERROR,
        non_retryable=not retryable,
    )


async def call(http: httpx.AsyncClient, label: str, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One HTTP call to a gateway: a 2xx response, else an error Temporal knows whether to retry."""
    import httpx  # loaded already: `http` is an httpx client

    try:
        response = await http.request(method, url, **kwargs)
    except httpx.HTTPError as err:  # connection refused, timeouts: worth another attempt
        raise ApplicationError(f"{label} unreachable: {err!r}", type=GatewayFailure.UNREACHABLE) from err
    if not response.is_success:
        raise http_failure(label, response)
    return response
