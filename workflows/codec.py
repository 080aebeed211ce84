"""Encrypted workflow payloads: what Temporal stores (inputs, results, signals, summaries, failures) is
AES-256-GCM ciphertext, so access to Temporal (its UI, CLI, a backup, a cloud support engineer) without the
keys reveals nothing personal. Workflow ids, types and search attributes stay readable; they hold opaque ids.

Keys form a ring: each encrypted payload names its key id, so a new key can encrypt while the old ones still
decode the histories written with them. Payloads that are not encrypted (histories from before encryption,
the stored replay histories in tests) pass through unchanged.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import os
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf.message import DecodeError
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes, PayloadCodec

from settings import Settings

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
NONCE_BYTES = 12
DEV_KEYS_FILE = "payload-keys"
"""In DATA_DIR: the development key ring generated when PAYLOAD_KEYS is unset (never in production)."""


class UndecodablePayload(ValueError):
    """A payload marked encrypted that does not open: altered, truncated, or under a key not held."""


class UnknownPayloadKey(UndecodablePayload):
    """A payload names a key the ring does not hold: a key was dropped while histories still need it."""


@dataclasses.dataclass(frozen=True)
class KeyRing:
    keys: Mapping[str, bytes]
    current: str
    """The key id that encrypts new payloads."""

    def __post_init__(self) -> None:
        if self.current not in self.keys:
            raise ValueError(f"PAYLOAD_KEY_ID {self.current!r} is not in PAYLOAD_KEYS")

    @classmethod
    def parse(cls, text: str, current: str | None = None) -> KeyRing:
        """`id:base64key` entries, comma-separated or a JSON list; `current` unset: the last one listed."""
        stripped = text.strip()
        entries: Sequence[str] = json.loads(stripped) if stripped.startswith("[") else stripped.split(",")
        keys: dict[str, bytes] = {}
        for entry in (item.strip() for item in entries):
            key_id, separator, encoded = entry.partition(":")
            if not entry or not separator or not key_id:
                raise ValueError("PAYLOAD_KEYS entries are `id:base64key`")
            try:
                key = base64.b64decode(encoded, validate=True)
            except binascii.Error as err:
                raise ValueError(f"PAYLOAD_KEYS key {key_id!r} is not base64") from err
            if len(key) != 32:
                raise ValueError(f"PAYLOAD_KEYS key {key_id!r} must be 32 bytes (AES-256), not {len(key)}")
            if key_id in keys:
                raise ValueError(f"PAYLOAD_KEYS lists key id {key_id!r} twice")
            keys[key_id] = key
        if not keys:
            raise ValueError("PAYLOAD_KEYS holds no key")
        return cls(keys=keys, current=current or next(reversed(keys)))

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        if settings.payload_keys is not None:
            return cls.parse(settings.payload_keys.get_secret_value(), settings.payload_key_id)
        if settings.is_production:  # settings refuse this already; never invent a key that production would lose
            raise ValueError("PAYLOAD_KEYS must be set in production")
        return cls.parse(_development_keys(settings.data_dir), settings.payload_key_id)


def _development_keys(data_dir: Path) -> str:
    """One key per data folder, made on first use and kept: the API and the worker (started together by
    `make run`) must read the same one, and it must outlive restarts as long as the folder's histories do.
    Created by linking a complete file into place, so two processes racing both end up reading the winner's."""
    path = data_dir / DEV_KEYS_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        draft = data_dir / f".{DEV_KEYS_FILE}.{secrets.token_hex(8)}"
        key = base64.b64encode(os.urandom(32)).decode()
        draft.write_text(f"dev-{secrets.token_hex(4)}:{key}\n")
        draft.chmod(0o600)
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text()


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM per payload: a fresh 96-bit nonce each time; the key id is bound as associated data so a
    payload cannot be passed off under another key's id."""

    def __init__(self, ring: KeyRing) -> None:
        self._ring = ring
        self._ciphers = {key_id: AESGCM(key) for key_id, key in ring.keys.items()}

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        key_id = self._ring.current
        cipher = self._ciphers[key_id]
        encoded = []
        for payload in payloads:
            nonce = os.urandom(NONCE_BYTES)
            sealed = cipher.encrypt(nonce, payload.SerializeToString(), key_id.encode())
            encoded.append(Payload(metadata={"encoding": ENCODING, KEY_ID: key_id.encode()}, data=nonce + sealed))
        return encoded

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        decoded = []
        for payload in payloads:
            if payload.metadata.get("encoding") != ENCODING:
                decoded.append(payload)  # written before encryption (or by a client without it): as it is
                continue
            key_id = payload.metadata.get(KEY_ID, b"").decode(errors="replace")
            cipher = self._ciphers.get(key_id)
            if cipher is None:
                raise UnknownPayloadKey(f"payload encrypted with key {key_id!r}, which PAYLOAD_KEYS does not hold")
            nonce, sealed = payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:]
            if len(nonce) != NONCE_BYTES:
                raise UndecodablePayload(f"payload under key {key_id!r} is too short to be encrypted")
            try:
                decoded.append(Payload.FromString(cipher.decrypt(nonce, sealed, key_id.encode())))
            except (InvalidTag, DecodeError) as err:
                raise UndecodablePayload(f"payload under key {key_id!r} does not decrypt: altered or corrupt") from err
        return decoded


def codec(settings: Settings) -> EncryptionCodec:
    return EncryptionCodec(KeyRing.from_settings(settings))


def data_converter(settings: Settings) -> DataConverter:
    """The converter of every client, worker and replayer: pydantic JSON, then encryption. Failures' messages
    and stack traces go into an encrypted payload too (they can quote an email address or an idea)."""
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=codec(settings),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )
