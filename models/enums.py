"""Enumerations shared by tables, API schemas and workflows (pure Python: safe in the workflow sandbox)."""

from enum import StrEnum


class ServiceTier(StrEnum):
    """What a user has paid for; EU_COMPLIANCE keeps AI processing on EU-resident providers."""

    STANDARD = "STANDARD"
    EU_COMPLIANCE = "EU_COMPLIANCE"
    PREMIUM = "PREMIUM"


class AITier(StrEnum):
    OLLAMA = "OLLAMA"
    OPENAI = "OPENAI"
    AZURE = "AZURE"
    OFFLINE = "OFFLINE"


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
