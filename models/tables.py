"""SQLModel tables. Never sent through Temporal: activities turn rows into schemas first.

Money is integer minor units plus an ISO currency; AI cost is integer micro-dollars (the seed's
Decimal(10, 6)), because a single call costs fractions of a cent.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import JSON, Column, Field, SQLModel

from models.enums import AIProvider, ContactStatus, PaymentGateway, PaymentStatus, PrototypeStatus, ServiceTier
from models.types import UTCDateTime, utcnow

SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _enum(enum: type, name: str | None = None) -> Any:
    """Enums stored as short strings: portable, and new members need no ALTER TYPE. `name` keeps the type name
    the migrations gave an enum whose class was renamed since."""
    return sa.Enum(enum, name=name, native_enum=False, length=32, validate_strings=True)


def _created() -> Any:
    return Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


def _moment(index: bool = False) -> Any:
    return Field(default=None, sa_type=UTCDateTime, nullable=True, index=index)


class User(SQLModel, table=True):
    __tablename__ = "users"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    email: str = Field(max_length=320, unique=True, index=True)
    password_hash: str = Field(max_length=100)
    name: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default=None, max_length=32)
    language: str = Field(default="en", max_length=16)
    tier: ServiceTier = Field(default=ServiceTier.STANDARD, sa_type=_enum(ServiceTier))
    email_verified_at: datetime | None = _moment()
    """When the holder of `email` proved they read it (a verification or reset link); None: not yet. Until then
    nothing is linked to the account by its address (contact messages in its export, in its erasure)."""
    created_at: datetime = _created()
    updated_at: datetime = _created()


class Session(SQLModel, table=True):
    """One refresh-token family: a login. Each refresh replaces `token_hash`; an older token coming back
    means it was stolen, and the whole family is revoked."""

    __tablename__ = "sessions"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    token_hash: str = Field(max_length=64)
    generation: int = Field(default=0)
    user_agent: str | None = Field(default=None, max_length=512)
    ip: str | None = Field(default=None, max_length=64)
    created_at: datetime = _created()
    last_rotated_at: datetime | None = _moment()
    expires_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    revoked_at: datetime | None = _moment()
    revoke_reason: str | None = Field(default=None, max_length=32)


class File(SQLModel, table=True):
    """An uploaded or generated file. The storage key is the server's; the user's name is metadata only."""

    __tablename__ = "files"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    storage_key: str = Field(max_length=200, unique=True)
    original_name: str = Field(max_length=255)
    content_type: str = Field(max_length=128)
    size_bytes: int = Field(ge=0, sa_type=sa.BigInteger)
    sha256: str = Field(max_length=64)
    created_at: datetime = _created()
    expires_at: datetime = Field(sa_type=UTCDateTime, nullable=False, index=True)
    deleted_at: datetime | None = _moment()


class Prototype(SQLModel, table=True):
    __tablename__ = "prototypes"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    idea: str = Field(sa_type=sa.Text)
    source: str = Field(default="text", max_length=16)
    status: PrototypeStatus = Field(default=PrototypeStatus.QUEUED, sa_type=_enum(PrototypeStatus))
    current_step: str | None = Field(default=None, max_length=64)
    steps_done: list[str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    """As the workflow's last milestone reported it; None on rows written before it was recorded."""
    progress_percent: int = Field(default=0, ge=0, le=100)
    cost_usd_micros: int = Field(default=0, ge=0, sa_type=sa.BigInteger)
    file_id: uuid.UUID | None = Field(default=None, foreign_key="files.id", ondelete="SET NULL")
    error: str | None = Field(default=None, sa_type=sa.Text)
    verified: bool | None = None
    """Whether the code passed its sandbox checks; None: not checked (yet, or a run older than the sandbox)."""
    fix_rounds: int = Field(default=0, ge=0, sa_column_kwargs={"server_default": "0"})
    verification: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    """The latest VerificationResult (models.messages.prototypes), as the workflow recorded it."""
    preview: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    """The picture of the running app (a StoredPreview: its PNG file and size); None: none (yet)."""
    preview_unavailable: str | None = Field(default=None, sa_type=sa.Text)
    """Why a checked prototype has no picture (no browser on the worker, no web page, ...), for people."""
    created_at: datetime = _created()
    updated_at: datetime = _created()
    completed_at: datetime | None = _moment()


class PrototypeRevision(SQLModel, table=True):
    """One revision of a completed prototype (PrototypeRevisionWorkflow): the feedback, and what came of it."""

    __tablename__ = "prototype_revisions"
    __table_args__ = (sa.UniqueConstraint("prototype_id", "number", name="uq_prototype_revisions_number"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    prototype_id: uuid.UUID = Field(foreign_key="prototypes.id", index=True, ondelete="CASCADE")
    user_id: uuid.UUID = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    number: int = Field(ge=1)
    feedback: str = Field(sa_type=sa.Text)
    status: PrototypeStatus = Field(default=PrototypeStatus.QUEUED, sa_type=_enum(PrototypeStatus))
    current_step: str | None = Field(default=None, max_length=64)
    cost_usd_micros: int = Field(default=0, ge=0, sa_type=sa.BigInteger)
    file_id: uuid.UUID | None = Field(default=None, foreign_key="files.id", ondelete="SET NULL")
    verified: bool | None = None
    fix_rounds: int = Field(default=0, ge=0)
    error: str | None = Field(default=None, sa_type=sa.Text)
    files: dict[str, str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    """Path -> text of every file once COMPLETED: what the next revision builds on (the zip expires)."""
    preview: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    """The picture of the revised app (a StoredPreview); None: none (yet)."""
    preview_unavailable: str | None = Field(default=None, sa_type=sa.Text)
    created_at: datetime = _created()
    updated_at: datetime = _created()
    completed_at: datetime | None = _moment()


class AIResponse(SQLModel, table=True):
    """One call to a model. `call_key` makes the write idempotent when Temporal retries the activity."""

    __tablename__ = "ai_responses"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    call_key: str = Field(max_length=200, unique=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    prototype_id: uuid.UUID | None = Field(default=None, foreign_key="prototypes.id", index=True, ondelete="CASCADE")
    step: str | None = Field(default=None, max_length=64)
    prompt: str = Field(sa_type=sa.Text)
    response: str = Field(sa_type=sa.Text)
    tier: AIProvider = Field(sa_type=_enum(AIProvider, name="aitier"))  # the provider, under its column's name
    model_used: str = Field(max_length=128)
    input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)
    cost_usd_micros: int = Field(default=0, ge=0, sa_type=sa.BigInteger)
    processing_time_ms: int = Field(default=0, ge=0)
    created_at: datetime = _created()


class Payment(SQLModel, table=True):
    """Amounts come from the server's catalogue, never from the request."""

    __tablename__ = "payments"
    __table_args__ = (sa.UniqueConstraint("user_id", "idempotency_key", name="uq_payments_user_idempotency"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    amount_minor: int = Field(ge=0, sa_type=sa.BigInteger)
    currency: str = Field(max_length=3)
    gateway: PaymentGateway = Field(sa_type=_enum(PaymentGateway))
    gateway_id: str | None = Field(default=None, max_length=255, index=True)
    status: PaymentStatus = Field(default=PaymentStatus.PENDING, sa_type=_enum(PaymentStatus))
    tier: ServiceTier = Field(sa_type=_enum(ServiceTier))
    idempotency_key: str | None = Field(default=None, max_length=255)
    details: dict[str, Any] | None = Field(default=None, sa_column=Column("metadata", JSON))
    created_at: datetime = _created()
    updated_at: datetime = _created()
    completed_at: datetime | None = _moment()
    refunded_at: datetime | None = _moment()


class Contact(SQLModel, table=True):
    __tablename__ = "contacts"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID | None = Field(default=None, foreign_key="users.id", index=True, ondelete="SET NULL")
    name: str = Field(max_length=200)
    email: str = Field(max_length=320)
    phone: str | None = Field(default=None, max_length=32)
    subject: str | None = Field(default=None, max_length=200)
    message: str = Field(sa_type=sa.Text)
    status: ContactStatus = Field(default=ContactStatus.RECEIVED, sa_type=_enum(ContactStatus))
    ip: str | None = Field(default=None, max_length=64)
    created_at: datetime = _created()
    notified_at: datetime | None = _moment()


class EmailDelivery(SQLModel, table=True):
    """What was sent, keyed by the message's own id, so a retried send activity finds it and stops."""

    __tablename__ = "email_deliveries"

    message_id: str = Field(primary_key=True, max_length=200)
    recipient: str = Field(max_length=320)
    subject: str = Field(max_length=300)
    backend: str = Field(max_length=16)
    provider_message_id: str | None = Field(default=None, max_length=255)
    sent_at: datetime = _created()


class IdempotencyKey(SQLModel, table=True):
    """One use of an Idempotency-Key (as Stripe defines them): the request it came with, as a fingerprint, and
    the resource it names. A retry with the same request replays that resource; another request is refused."""

    __tablename__ = "idempotency_keys"

    scope: str = Field(primary_key=True, max_length=100)
    """What the key is for and whose it is: `contact:anonymous`, `chat:user:<id>`, `payment:<user id>`..."""
    key: str = Field(primary_key=True, max_length=255)
    fingerprint: str = Field(max_length=64)
    """sha256 of the canonical request (JSON body, or a voice message's sha256 and language)."""
    resource_id: uuid.UUID
    created_at: datetime = _created()


def verified_address(user: User | None) -> str | None:
    """The account's address if its holder has verified it, normalised; else None."""
    if user is None or user.email_verified_at is None:
        return None
    return user.email.strip().lower()


def contacts_owned_by(user_id: uuid.UUID, address: str | None) -> Any:
    """The contact messages that are the account's own: those it sent signed in, and, once its address is verified
    (`address`, from verified_address), those sent from that address by nobody signed in. Never a message another
    account sent naming the address: that row is the other account's."""
    own = sa.and_(Contact.__table__.c.user_id == user_id)  # type: ignore[attr-defined]
    if address is None:
        return own
    columns = Contact.__table__.c  # type: ignore[attr-defined]
    sent_from = sa.and_(columns.user_id.is_(None), sa.func.lower(sa.func.trim(columns.email)) == address)
    return sa.or_(own, sent_from)
