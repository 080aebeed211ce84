"""Passwords (bcrypt), access tokens (JWT), opaque refresh tokens, and the tokens of a prototype's events URL.
The tokens of links sent to an account's address are in models/tokens.py (the email activity signs them)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

import anyio
import bcrypt
import jwt

from models.api.auth import BCRYPT_MAX_BYTES
from models.tokens import EXPIRY_DIGITS, InvalidToken
from models.types import utcnow
from settings import Settings

ACCESS_TOKEN_TYPE = "access"
AUDIENCE = "statex-api"


async def hash_password(password: str, rounds: int) -> str:
    """bcrypt is slow on purpose; keep it off the event loop."""
    salt = bcrypt.gensalt(rounds)
    hashed = await anyio.to_thread.run_sync(bcrypt.hashpw, password.encode(), salt)
    return hashed.decode()


async def verify_password(password: str, password_hash: str | None, rounds: int) -> bool:
    """Constant in time whether or not the user exists: an unknown user is checked against a dummy hash.
    A password longer than bcrypt takes (72 bytes; the request models refuse it with a 422 first) is checked
    the same way and never matches, rather than raising bcrypt's ValueError as a 500."""
    candidate = (password_hash or _dummy_hash(rounds)).encode()
    presented = password.encode()
    fits = len(presented) <= BCRYPT_MAX_BYTES
    matches = await anyio.to_thread.run_sync(bcrypt.checkpw, presented[:BCRYPT_MAX_BYTES], candidate)
    return matches and fits and password_hash is not None


@lru_cache
def _dummy_hash(rounds: int) -> str:
    return bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(rounds)).decode()


@dataclass(frozen=True)
class AccessClaims:
    user_id: uuid.UUID
    session_id: uuid.UUID
    expires_at: datetime


def issue_access_token(settings: Settings, user_id: uuid.UUID, session_id: uuid.UUID) -> tuple[str, int]:
    lifetime = timedelta(minutes=settings.access_token_minutes)
    now = utcnow()
    claims = {
        "sub": str(user_id),
        "sid": str(session_id),
        "typ": ACCESS_TOKEN_TYPE,
        "iss": settings.jwt_issuer,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + lifetime,
        "jti": secrets.token_hex(8),
    }
    token = jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm=settings.jwt_algorithm)
    return token, int(lifetime.total_seconds())


def decode_access_token(settings: Settings, token: str) -> AccessClaims:
    """The token's claims if its signature holds and it has not expired. The signature is checked once per
    token and process (every signed-in request presents the same token for its lifetime); the expiry on every
    call. Whether its session is still live is the caller's question, asked every time (AccountService)."""
    claims = _verified_claims(
        token, settings.jwt_secret.get_secret_value(), settings.jwt_algorithm, settings.jwt_issuer
    )
    if claims.expires_at <= utcnow():
        raise InvalidToken("access token expired")
    return claims


@lru_cache(maxsize=4096)
def _verified_claims(token: str, secret: str, algorithm: str, issuer: str) -> AccessClaims:
    """Pure in its arguments but for the clock: `exp` the caller checks again on every use, and `iat` only ever
    turns a token from not yet valid to valid. So a verified token's claims can be kept; a token that fails
    raises, and nothing is kept for it."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[algorithm],
            audience=AUDIENCE,
            issuer=issuer,
            options={"require": ["exp", "iat", "sub", "sid", "typ"]},
        )
        if claims["typ"] != ACCESS_TOKEN_TYPE:
            raise InvalidToken("not an access token")
        return AccessClaims(
            user_id=uuid.UUID(claims["sub"]),
            session_id=uuid.UUID(claims["sid"]),
            expires_at=datetime.fromtimestamp(claims["exp"]).astimezone(),
        )
    except jwt.ExpiredSignatureError as err:
        raise InvalidToken("access token expired") from err
    except (jwt.InvalidTokenError, ValueError, TypeError) as err:
        raise InvalidToken("invalid access token") from err


@dataclass(frozen=True)
class RefreshToken:
    """`<session id>.<secret>`: the id finds the family, the secret's hash proves it is the current one."""

    session_id: uuid.UUID
    secret: str

    @classmethod
    def new(cls, session_id: uuid.UUID) -> RefreshToken:
        return cls(session_id, secrets.token_urlsafe(32))

    @classmethod
    def parse(cls, token: str) -> RefreshToken:
        session_part, _, secret = token.partition(".")
        try:
            session_id = uuid.UUID(session_part)
        except ValueError as err:
            raise InvalidToken("malformed refresh token") from err
        if not 20 <= len(secret) <= 100:
            raise InvalidToken("malformed refresh token")
        return cls(session_id, secret)

    def __str__(self) -> str:
        return f"{self.session_id}.{self.secret}"

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.secret.encode()).hexdigest()

    def matches(self, digest: str) -> bool:
        return hmac.compare_digest(self.digest, digest)


def bearer_matches(authorization: str | None, token: str) -> bool:
    """An `Authorization: Bearer <token>` header carrying exactly `token` (an operator's token, not a user's
    JWT), compared in constant time so the comparison tells an attacker nothing."""
    scheme, _, presented = (authorization or "").partition(" ")
    if not token:  # an empty token would match `Bearer` with nothing after it
        return False
    return scheme.lower() == "bearer" and hmac.compare_digest(presented.encode(), token.encode())


EVENTS_TOKEN_PREFIX = "ev2."
"""ev2 names the session too (ev1, which named only the user, is no longer accepted: a stream must end with the
session that opened it)."""


@dataclass(frozen=True)
class EventsClaims:
    """Who an events token lets in: the user, and the session it was issued in (the stream ends with it)."""

    user_id: uuid.UUID
    session_id: uuid.UUID


def sign_events_token(
    settings: Settings, user_id: uuid.UUID, session_id: uuid.UUID, prototype_id: uuid.UUID, expires_at: int
) -> str:
    """What `events_url` carries, since `EventSource` cannot send an Authorization header: it opens the event
    stream of this one prototype, as this user in this session, until `expires_at` (Unix seconds), and nothing
    else. `ev2.<user id>.<session id>.<expiry>.<HMAC-SHA256>` under a key of its own (no access token or
    download link passes for one, nor one for them); the prototype is signed, not carried: the path names it."""
    mac = _events_mac(settings, user_id, session_id, prototype_id, expires_at)
    return f"{EVENTS_TOKEN_PREFIX}{user_id.hex}.{session_id.hex}.{expires_at}.{mac}"


def events_token_claims(settings: Settings, token: str, prototype_id: uuid.UUID) -> EventsClaims:
    """The user and session an events token was signed for, if it was signed for `prototype_id` and has not
    expired; otherwise InvalidToken (malformed, tampered with, another prototype's, expired: one answer for all).
    Whether the session is still live is the caller's question."""
    parts = token.removeprefix(EVENTS_TOKEN_PREFIX).split(".")
    invalid = InvalidToken("invalid or expired events token")
    if not token.startswith(EVENTS_TOKEN_PREFIX) or len(parts) != 4:
        raise invalid
    user, session, expiry, mac = parts
    if len(user) != 32 or len(session) != 32:
        raise invalid
    if not expiry.isascii() or not expiry.isdigit() or len(expiry) > EXPIRY_DIGITS:
        raise invalid
    try:
        user_id, session_id = uuid.UUID(hex=user), uuid.UUID(hex=session)
    except ValueError as err:
        raise invalid from err
    # Compared in constant time before the expiry is trusted: a forged expiry never gets as far as the clock.
    expected = _events_mac(settings, user_id, session_id, prototype_id, int(expiry))
    if not hmac.compare_digest(mac.encode(), expected.encode()) or int(expiry) <= time.time():
        raise invalid
    return EventsClaims(user_id=user_id, session_id=session_id)


def _events_mac(
    settings: Settings, user_id: uuid.UUID, session_id: uuid.UUID, prototype_id: uuid.UUID, expiry: int
) -> str:
    message = b"%s\x00%s\x00%s\x00%s\x00%d" % (
        settings.jwt_issuer.encode(),
        user_id.bytes,
        session_id.bytes,
        prototype_id.bytes,
        expiry,
    )
    digest = hmac.new(_events_key(settings.jwt_secret.get_secret_value()), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@lru_cache(maxsize=4)
def _events_key(secret: str) -> bytes:
    """Derived from JWT_SECRET for this one use: rotating the secret ends every events token with the sessions."""
    return hmac.new(secret.encode(), b"statex prototype events", hashlib.sha256).digest()
