"""The tokens of links sent to an account's address (verify it, reset the password): HMAC-signed, bound to what
the server reads again when the link is used. Signed by the email activity, checked by services/addresses.py."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from enum import StrEnum
from functools import lru_cache

from settings import Settings

EXPIRY_DIGITS = 12  # Unix seconds up to year 33658: longer is malformed, not parsed


class InvalidToken(Exception):
    """The token is malformed, tampered with, expired or of the wrong type."""


class AddressPurpose(StrEnum):
    """What a token sent to an account's address does; each purpose has its own key and prefix."""

    VERIFY = "av1."
    RESET = "pr1."


def sign_address_token(
    settings: Settings, purpose: AddressPurpose, user_id: uuid.UUID, expires_at: int, binding: str
) -> str:
    """`<prefix><user id>.<expiry>.<HMAC-SHA256>`, for one account until `expires_at` (Unix seconds). The MAC also
    covers `binding`, which the token does not carry and the server reads again when it is used: the address for a
    verification (a link sent to an old address never verifies a new one), the address and the password hash for a
    reset (so setting a password, by this code or any other way, ends every code issued before: single use)."""
    mac = _address_mac(settings, purpose, user_id, expires_at, binding)
    return f"{purpose.value}{user_id.hex}.{expires_at}.{mac}"


def address_token_subject(purpose: AddressPurpose, token: str) -> tuple[uuid.UUID, int]:
    """The account and expiry a token names, unchecked (address_token_valid checks it); InvalidToken if malformed."""
    user, dot, rest = token.removeprefix(purpose.value).partition(".")
    expiry, dot_, mac = rest.partition(".")
    well_formed = token.startswith(purpose.value) and dot and dot_ and len(user) == 32 and len(mac) == 43
    if not well_formed or not expiry.isascii() or not expiry.isdigit() or len(expiry) > EXPIRY_DIGITS:
        raise InvalidToken("invalid or expired link")
    try:
        return uuid.UUID(hex=user), int(expiry)
    except ValueError as err:
        raise InvalidToken("invalid or expired link") from err


def address_token_valid(settings: Settings, purpose: AddressPurpose, token: str, binding: str) -> bool:
    """Signed for this purpose, account and binding, and not expired; compared in constant time first."""
    user_id, expiry = address_token_subject(purpose, token)
    expected = sign_address_token(settings, purpose, user_id, expiry, binding)
    return hmac.compare_digest(token.encode(), expected.encode()) and expiry > time.time()


def _address_mac(settings: Settings, purpose: AddressPurpose, user_id: uuid.UUID, expiry: int, binding: str) -> str:
    message = b"%s\x00%s\x00%d\x00%s" % (settings.jwt_issuer.encode(), user_id.bytes, expiry, binding.encode())
    key = _address_key(settings.jwt_secret.get_secret_value(), purpose.value)
    return base64.urlsafe_b64encode(hmac.new(key, message, hashlib.sha256).digest()).rstrip(b"=").decode()


@lru_cache(maxsize=8)
def _address_key(secret: str, purpose: str) -> bytes:
    return hmac.new(secret.encode(), b"statex address token " + purpose.encode(), hashlib.sha256).digest()


def verify_binding(email: str) -> str:
    return email.strip().lower()


def reset_binding(email: str, password_hash: str) -> str:
    return f"{email.strip().lower()}\x00{password_hash}"
