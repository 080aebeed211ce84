"""Pydantic models: API requests and responses, and the inputs and outputs of workflows and activities.

Everything that crosses Temporal is defined here (plain pydantic, never a `table=True` model), and this
module imports nothing but pydantic and the enums, so workflows can import it inside the sandbox.
"""

from __future__ import annotations

import unicodedata
import uuid
from datetime import datetime, timedelta
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from models.enums import (
    AITier,
    ContactStatus,
    GatewayState,
    PaymentGateway,
    PaymentStatus,
    PrototypeStatus,
    ServiceTier,
)

BCRYPT_MAX_BYTES = 72


def _fits_bcrypt(password: str) -> str:
    if len(password.encode("utf-8")) > BCRYPT_MAX_BYTES:
        raise ValueError(
            f"password is longer than {BCRYPT_MAX_BYTES} bytes in UTF-8; bcrypt would silently ignore the rest"
        )
    return password


def _lower(email: str) -> str:
    return email.lower()


Email = Annotated[EmailStr, AfterValidator(_lower)]
NewPassword = Annotated[str, Field(min_length=8, examples=["correct horse battery"]), AfterValidator(_fits_bcrypt)]
Password = Annotated[str, Field(min_length=1), AfterValidator(_fits_bcrypt)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class Strict(BaseModel):
    """Request bodies refuse fields they do not know, so a typo or a smuggled field is an error."""

    model_config = ConfigDict(extra="forbid")


# --- errors ---------------------------------------------------------------------------------------


class FieldError(BaseModel):
    field: str = Field(examples=["body.email"])
    message: str = Field(examples=["value is not a valid email address"])


class ErrorResponse(BaseModel):
    """The one shape of every failure (the seed's error handler)."""

    success: Literal[False] = False
    error: str
    code: int
    timestamp: datetime
    details: list[FieldError] | None = None


class RateLimitResponse(ErrorResponse):
    message: str = Field(examples=["Rate limit exceeded. Try again in 86400 seconds."])
    retryAfter: int = Field(description="Seconds until the next request is allowed, as in Retry-After")


# --- auth -----------------------------------------------------------------------------------------


class RegisterRequest(Strict):
    email: Email
    password: NewPassword
    name: Name | None = None


class LoginRequest(Strict):
    email: Email
    password: Password


class RefreshRequest(Strict):
    refresh_token: str = Field(min_length=1, max_length=512)


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Lifetime of the access token in seconds")


class UserPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    name: str | None
    phone: str | None
    language: str
    tier: ServiceTier
    created_at: datetime


# --- contact --------------------------------------------------------------------------------------


class ContactRequest(Strict):
    name: Name
    email: Email
    message: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=5000)]
    subject: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)] | None = None
    phone: Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^\+?[0-9 ()-]{5,32}$")] | None = None


class ContactAccepted(BaseModel):
    success: Literal[True] = True
    contact_id: uuid.UUID
    status: ContactStatus
    workflow_id: str


# --- workflow and activity payloads ---------------------------------------------------------------


class EmailMessage(BaseModel):
    """`message_id` is the idempotency key: the same id is never delivered twice."""

    message_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,200}$")]
    to: list[str] = Field(min_length=1)
    subject: str = Field(max_length=300)
    text: str
    html: str | None = None
    reply_to: str | None = None


class EmailReceipt(BaseModel):
    message_id: str
    backend: str
    provider_message_id: str | None
    sent_at: datetime


class ContactNotice(BaseModel):
    contact_id: uuid.UUID
    team_address: str
    name: str
    email: str
    message: str
    subject: str | None = None
    phone: str | None = None


class ContactProgress(BaseModel):
    contact_id: uuid.UUID | None
    team_notified: bool
    sender_confirmed: bool


class HealthStatus(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = Field(default_factory=dict)


# --- files ----------------------------------------------------------------------------------------


class CamelModel(BaseModel):
    """The seed's file API speaks camelCase (`fileId`, `expiresAt`)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, from_attributes=True)


class UploadedFile(CamelModel):
    file_id: uuid.UUID
    url: str = Field(description="Where the owner downloads it: GET, with the access token")
    size: int
    expires_at: datetime


class FileInfo(UploadedFile):
    name: str
    content_type: str
    sha256: str
    created_at: datetime


class FileDeletion(CamelModel):
    file_id: uuid.UUID
    deleted: bool = Field(description="True once the object is gone; false if deletion is still under way")


class RetainedFile(BaseModel):
    """What FileRetentionWorkflow needs: the key to delete and when."""

    file_id: uuid.UUID
    user_id: uuid.UUID
    storage_key: str
    expires_at: datetime


class RetentionStatus(BaseModel):
    file_id: uuid.UUID | None
    deletes_at: datetime | None
    deleted_at: datetime | None
    deleted_early: bool


# --- AI: chat, model calls, transcription ---------------------------------------------------------

AIProviderName = Literal["ollama", "openai", "azure"]


def _plain_text(text: str) -> str:
    """Words, not control bytes: PostgreSQL cannot store NUL, and no idea needs a bell or an escape."""
    if any(unicodedata.category(c) == "Cc" and c not in "\t\n\r" for c in text):
        raise ValueError("must not contain control characters such as NUL")
    if not text.strip():
        raise ValueError("must contain more than whitespace")
    return text


class ChatRequest(Strict):
    """The seed's AIPromptSchema."""

    message: Annotated[str, Field(min_length=1, max_length=10_000), AfterValidator(_plain_text)]
    model: AIProviderName | None = Field(
        default=None, description="Preferred provider, tried first; otherwise your service tier decides"
    )
    temperature: float = Field(default=0.7, ge=0, le=2)
    max_tokens: int = Field(default=2000, ge=1, le=4000)


class ChatResponse(BaseModel):
    """The seed's AIResponseSchema; `cost_usd_micros` is the stored truth, `cost_usd` is derived from it."""

    success: Literal[True] = True
    chat_id: uuid.UUID
    response: str
    model_used: str = Field(examples=["openai:gpt-4o-mini", "offline:template"])
    tokens_used: int
    processing_time_ms: int
    cost_usd: float
    cost_usd_micros: int


class ChatAccepted(BaseModel):
    """The answer took longer than the API waits: poll `status_url` (polls do not count against the AI limit)."""

    success: Literal[True] = True
    chat_id: uuid.UUID
    status: Literal["running"] = "running"
    status_url: str


class ChatStatus(BaseModel):
    success: Literal[True] = True
    chat_id: uuid.UUID
    status: Literal["running", "completed", "failed"]
    result: ChatResponse | None = None
    error: str | None = None


class AICallPolicy(BaseModel):
    """How long one provider gets per attempt, and how Temporal retries it before the next provider."""

    timeout_seconds: float = Field(gt=0)
    retry_initial_interval_seconds: float = Field(gt=0)
    retry_maximum_interval_seconds: float = Field(gt=0)
    retry_maximum_attempts: int = Field(ge=1)


class ModelCall(BaseModel):
    prompt: str
    temperature: float = 0.7
    max_tokens: int = 2000
    system: str | None = None
    step: str | None = Field(
        default=None, description="The prototype step asking (e.g. 'code'), so the offline template answers in kind"
    )


class ModelReply(BaseModel):
    """One model's answer. `model_used` says who answered: "offline:template" is no model at all."""

    tier: AITier
    text: str
    model_used: str
    input_tokens: int
    output_tokens: int
    latency_ms: int
    cost_usd_micros: int


class ChatInput(BaseModel):
    chat_id: uuid.UUID
    user_id: uuid.UUID
    providers: list[AITier] = Field(min_length=1, description="Tried in order; chosen by workflows.ai")
    call: ModelCall
    policy: AICallPolicy


class ChatOutcome(BaseModel):
    chat_id: uuid.UUID
    reply: ModelReply
    providers_tried: list[AITier]


class ChatProgress(BaseModel):
    chat_id: uuid.UUID | None
    trying: AITier | None
    providers_tried: list[AITier]
    answered: bool


class AICallRecord(BaseModel):
    """One AIResponse row; `call_key` makes writing it idempotent."""

    call_key: str = Field(max_length=200)
    user_id: uuid.UUID
    prototype_id: uuid.UUID | None = None
    step: str | None = None
    prompt: str
    reply: ModelReply


class TranscriptionCall(BaseModel):
    """Audio already in file storage: Temporal carries the key, never the bytes."""

    audio_key: str
    filename: str
    content_type: str
    language: str | None = Field(default=None, description="ISO-639-1 hint, e.g. 'cs'")


class Transcript(BaseModel):
    tier: AITier
    text: str
    model_used: str
    audio_milliseconds: int
    latency_ms: int
    cost_usd_micros: int


# --- payments -------------------------------------------------------------------------------------

COINBASE_SHUT_DOWN = (
    "Coinbase Commerce was shut down by Coinbase in 2026 and takes no payments; "
    "pay in crypto with gateway CRYPTO_BTCPAY (BTCPay Server) instead"
)
_CLIENT_PRICE_FIELDS = frozenset({"amount", "amount_minor", "price", "total", "value"})

Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$"), Field(examples=["EUR"])]


class CheckoutRequest(Strict):
    """What to buy and how to pay. Never an amount: prices come from the server's catalogue."""

    tier: ServiceTier
    gateway: PaymentGateway
    currency: Currency | None = Field(default=None, description="ISO 4217; the gateway's default when omitted")

    @model_validator(mode="before")
    @classmethod
    def _no_client_price(cls, data: object) -> object:
        if isinstance(data, dict) and (sent := sorted(_CLIENT_PRICE_FIELDS & data.keys())):
            raise ValueError(
                f"{', '.join(sent)} not accepted: the price comes from the server's catalogue; "
                "send only tier, gateway and optionally currency"
            )
        return data

    @field_validator("gateway")
    @classmethod
    def _gateway_in_service(cls, gateway: PaymentGateway) -> PaymentGateway:
        if gateway == PaymentGateway.CRYPTO_COINBASE:
            raise ValueError(COINBASE_SHUT_DOWN)
        return gateway


class CheckoutAction(BaseModel):
    """What the frontend does next: confirm with Stripe.js, or send the customer to the gateway's page."""

    kind: Literal["stripe_client_secret", "redirect"]
    client_secret: str | None = Field(default=None, description="Stripe: for stripe.confirmPayment()")
    redirect_url: str | None = Field(default=None, description="PayPal, BTCPay, Comgate: the gateway's page")


class PaymentPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    tier: ServiceTier
    gateway: PaymentGateway
    amount_minor: int = Field(description="Integer minor units (cents, hellers) of `currency`")
    currency: str
    status: PaymentStatus
    gateway_id: str | None
    created_at: datetime
    completed_at: datetime | None
    refunded_at: datetime | None
    next_action: CheckoutAction | None = Field(default=None, description="Set while the payment is PENDING")


class CheckoutResponse(BaseModel):
    payment: PaymentPublic
    workflow_id: str
    message: str | None = Field(default=None, description="Why `next_action` is missing, when it is")


class TierPrice(BaseModel):
    tier: ServiceTier
    name: str
    description: str
    prices: dict[str, int] = Field(description="Integer minor units per ISO 4217 currency")


class CatalogueListing(BaseModel):
    tiers: list[TierPrice]
    gateways: dict[PaymentGateway, list[str]] = Field(description="Currencies each gateway takes; first is default")


class CheckoutOrder(BaseModel):
    """CheckoutWorkflow's input: everything fixed at checkout, amounts from the catalogue."""

    payment_id: uuid.UUID
    user_id: uuid.UUID
    email: str
    tier: ServiceTier
    tier_name: str
    gateway: PaymentGateway
    amount_minor: int = Field(gt=0)
    currency: str
    amount_display: str
    return_url: str
    cancel_url: str
    expires_after: timedelta
    poll_every: timedelta
    refund_window: timedelta
    watch_refunds_for: timedelta

    def at_gateway(self, gateway_id: str) -> GatewayReference:
        return GatewayReference(
            payment_id=self.payment_id,
            gateway=self.gateway,
            gateway_id=gateway_id,
            amount_minor=self.amount_minor,
            currency=self.currency,
        )


class GatewaySession(BaseModel):
    """The gateway's object for one payment, and what the frontend needs to pay it."""

    gateway_id: str
    action: CheckoutAction


class GatewayReference(BaseModel):
    payment_id: uuid.UUID
    gateway: PaymentGateway
    gateway_id: str
    amount_minor: int
    currency: str


class GatewayStatus(BaseModel):
    state: GatewayState
    detail: str = Field(description="The gateway's own words, e.g. Stripe's `succeeded`")


class GatewayEvent(BaseModel):
    """A verified webhook, as a signal. `state` None means: the notice is not trusted, re-read the gateway."""

    event_id: str = Field(max_length=255)
    state: GatewayState | None
    detail: str = Field(max_length=255)


class GatewayObject(BaseModel):
    payment_id: uuid.UUID
    session: GatewaySession


class PaymentHistoryEntry(BaseModel):
    at: datetime
    what: str


class PaymentProgress(BaseModel):
    payment_id: uuid.UUID | None
    gateway: PaymentGateway | None
    status: PaymentStatus
    gateway_state: GatewayState
    gateway_id: str | None
    next_action: CheckoutAction | None
    refundable_until: datetime | None
    history: list[PaymentHistoryEntry]


# --- prototypes -----------------------------------------------------------------------------------


class PrototypeRequest(Strict):
    """An app idea in words; POST /api/ai/voice takes it as a voice message instead."""

    idea: Annotated[str, Field(min_length=1, max_length=10_000), AfterValidator(_plain_text)]
    model: AIProviderName | None = Field(
        default=None, description="Preferred provider for every step; otherwise your service tier decides"
    )


class PrototypeAccepted(BaseModel):
    """The pipeline runs in the background: poll `status_url` (polls do not count against the AI limit)."""

    success: Literal[True] = True
    prototype_id: uuid.UUID
    status: PrototypeStatus
    status_url: str
    workflow_id: str


class PrototypeView(BaseModel):
    """A prototype as its owner sees it: live while the pipeline runs, the stored result after."""

    prototype_id: uuid.UUID
    status: PrototypeStatus
    source: Literal["text", "voice"]
    idea: str = Field(description="The idea as submitted, or as transcribed from the voice message")
    steps: list[str] = Field(description="The pipeline, in order")
    steps_done: list[str]
    current_step: str | None
    trying: AITier | None = Field(default=None, description="The provider being asked right now (live only)")
    progress_percent: int
    cost_usd_micros: int
    cost_usd: float
    file_id: uuid.UUID | None
    download_url: str | None = Field(description="The zip: GET with the access token; kept 24 hours")
    error: str | None
    created_at: datetime
    completed_at: datetime | None


class PrototypeOrder(BaseModel):
    """PrototypeWorkflow's input: everything the API decided (providers, limits) before the workflow starts."""

    prototype_id: uuid.UUID
    user_id: uuid.UUID
    email: str
    idea: str = Field(default="", description="Empty for a voice message: the transcript becomes the idea")
    audio: TranscriptionCall | None = None
    providers: list[AITier] = Field(min_length=1, description="Tried in order; chosen by workflows.ai")
    provider_named: bool = Field(default=False, description="The request named a provider: steps keep its order")
    transcribers: list[AITier] = Field(default_factory=list)
    policy: AICallPolicy
    transcription_timeout_seconds: float = Field(default=300.0, gt=0)
    file_lifetime: timedelta
    link_base_url: str = Field(description="The API's public address, for the download link in the email")


class PrototypeProgress(BaseModel):
    """PrototypeWorkflow's query: where the pipeline stands, and what it has cost so far."""

    prototype_id: uuid.UUID | None
    status: PrototypeStatus
    idea: str
    steps: list[str]
    steps_done: list[str]
    current_step: str | None
    trying: AITier | None
    progress_percent: int
    cost_usd_micros: int
    file_id: uuid.UUID | None
    error: str | None


class PrototypeMilestone(BaseModel):
    """What the Prototype row says at a milestone; writing the same milestone twice changes nothing."""

    prototype_id: uuid.UUID
    status: PrototypeStatus
    idea: str | None = Field(default=None, description="Set once a voice message is transcribed")
    current_step: str | None
    progress_percent: int = Field(ge=0, le=100)
    cost_usd_micros: int = Field(ge=0)
    file_id: uuid.UUID | None = None
    error: str | None = None


class StepAnswer(BaseModel):
    """One agent step's answer, and where the package puts it."""

    step: str
    document: str = Field(description="Its file in the zip, e.g. PLAN.md")
    text: str
    model_used: str
    cost_usd_micros: int
    holds_files: bool = Field(default=False, description="Fenced blocks naming a path become files of their own")


class PrototypePackage(BaseModel):
    """What the packaging activity zips and stores as the file `file_id`."""

    prototype_id: uuid.UUID
    user_id: uuid.UUID
    file_id: uuid.UUID
    idea: str
    source: Literal["text", "voice"]
    transcribed_by: str | None = None
    answers: list[StepAnswer]
    made_at: datetime = Field(description="The zip entries' date: the same bytes on every retry")
    expires_at: datetime


class PackagedPrototype(BaseModel):
    file_id: uuid.UUID
    size: int
    sha256: str
    download_token: str = Field(description="Lets the email's link fetch the zip without signing in")
    names: list[str] = Field(description="The zip's entries")
