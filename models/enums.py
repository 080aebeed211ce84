"""Enumerations shared by tables, API schemas and workflows (pure Python: safe in the workflow sandbox)."""

from enum import StrEnum
from typing import Any


class ServiceTier(StrEnum):
    """What a user has paid for; EU_COMPLIANCE keeps AI processing on EU-resident providers."""

    STANDARD = "STANDARD"
    EU_COMPLIANCE = "EU_COMPLIANCE"
    PREMIUM = "PREMIUM"


# Who answers a model call; a request's `model` names one in lower case (models.api.common.AIProviderName).
# The values are stored (ai_responses.tier) and sent as they are.
class AIProvider(StrEnum):
    OLLAMA = "OLLAMA"
    OPENAI = "OPENAI"
    AZURE = "AZURE"
    OFFLINE = "OFFLINE"

    # The OpenAPI publishes this type as `AITier`, and generated clients name their type after it: pydantic's
    # hooks keep that schema name (its reference and title) for the renamed class.
    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        return {**handler(source), "ref": f"{__name__}.{_PUBLISHED_PROVIDER}"}

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: Any, handler: Any) -> Any:
        reference = handler(schema)
        handler.resolve_ref_schema(reference)["title"] = _PUBLISHED_PROVIDER
        return reference


_PUBLISHED_PROVIDER = "AITier"


class PaymentGateway(StrEnum):
    STRIPE = "STRIPE"
    PAYPAL = "PAYPAL"
    CRYPTO_COINBASE = "CRYPTO_COINBASE"
    CRYPTO_BTCPAY = "CRYPTO_BTCPAY"
    COMGATE = "COMGATE"


class PaymentStatus(StrEnum):
    PENDING = "PENDING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    REFUNDED = "REFUNDED"


class PrototypeStatus(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    AWAITING_APPROVAL = "AWAITING_APPROVAL"  # review_requirements: paused until the customer approves them
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"  # the customer declined the requirements, or did not answer in time


class ContactStatus(StrEnum):
    RECEIVED = "RECEIVED"
    NOTIFIED = "NOTIFIED"
    FAILED = "FAILED"  # the team's email could not be sent within its retry bound; the message is kept


class GatewayState(StrEnum):
    """Where a payment stands at its gateway, in the gateways' common terms."""

    PENDING = "PENDING"
    APPROVED = "APPROVED"  # PayPal: the payer approved; the order still has to be captured
    PAID = "PAID"
    FAILED = "FAILED"
    REFUNDED = "REFUNDED"
