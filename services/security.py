"""Passwords (bcrypt), access tokens (JWT) and opaque refresh tokens."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

import anyio
import bcrypt
import jwt

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
    """Constant in time whether or not the user exists: an unknown user is checked against a dummy hash."""
    candidate = (password_hash or _dummy_hash(rounds)).encode()
    matches = await anyio.to_thread.run_sync(bcrypt.checkpw, password.encode(), candidate)
    return matches and password_hash is not None


@lru_cache
def _dummy_hash(rounds: int) -> str:
    return bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(rounds)).decode()


@dataclass(frozen=True)
class AccessClaims:
    user_id: uuid.UUID
    session_id: uuid.UUID
    expires_at: datetime


class InvalidToken(Exception):
    """The token is malformed, tampered with, expired or of the wrong type."""


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
    return scheme.lower() == "bearer" and hmac.compare_digest(presented.encode(), token.encode())
