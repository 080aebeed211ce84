"""Idempotency keys: a retried request carries the same key and so names the same resource id."""

from __future__ import annotations

import uuid

_NAMESPACE = uuid.UUID("0b6f4f52-8f0e-4c1e-9a55-5a7e3e1f0c11")


def resource_id(kind: str, caller: str, idempotency_key: str | None) -> uuid.UUID:
    """A fresh id, or, with an idempotency key, the same id for the same caller and key every time."""
    if idempotency_key is None:
        return uuid.uuid4()
    return uuid.uuid5(_NAMESPACE, f"{kind}\n{caller}\n{idempotency_key}")
