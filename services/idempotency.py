"""Idempotency keys, as Stripe defines them. A key is scoped to its caller (a signed-in user; the key alone for
an anonymous contact form) and bound to the request it first came with: the same request again replays the
first one's resource; a different request under the same key is refused (422), never silently dropped."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from models.db import Database, insert_if_absent
from models.tables import IdempotencyKey
from models.types import utcnow
from services.errors import Unprocessable

_NAMESPACE = uuid.UUID("0b6f4f52-8f0e-4c1e-9a55-5a7e3e1f0c11")

KEY_REUSED = "This Idempotency-Key was used with a different request; send a new key"


def resource_id(kind: str, caller: str, idempotency_key: str | None) -> uuid.UUID:
    """A fresh id, or, with an idempotency key, the same id for the same caller and key every time."""
    if idempotency_key is None:
        return uuid.uuid4()
    return uuid.uuid5(_NAMESPACE, f"{kind}\n{caller}\n{idempotency_key}")


def fingerprint(request: Any) -> str:
    """sha256 of the request as canonical JSON (sorted keys, no spaces): the same request, the same print."""
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def claim(database: Database, kind: str, caller: str, idempotency_key: str | None, request: Any) -> uuid.UUID:
    """The id of the resource this request makes or replays. The first use of a key records the request's
    fingerprint (insert-if-absent, so concurrent first uses agree on one); a later use with another request is
    an Unprocessable (422). Without a key: a fresh id, nothing recorded."""
    chosen = resource_id(kind, caller, idempotency_key)
    if idempotency_key is None:
        return chosen
    scope, printed = f"{kind}:{caller}", fingerprint(request)
    async with database.session() as db:
        values = {
            "scope": scope,
            "key": idempotency_key,
            "fingerprint": printed,
            "resource_id": chosen,
            "created_at": utcnow(),
        }
        await insert_if_absent(db, IdempotencyKey, values)
        await db.commit()
        first = await db.get(IdempotencyKey, (scope, idempotency_key))
    if first is None or first.fingerprint != printed:
        raise Unprocessable(KEY_REUSED)
    return first.resource_id
