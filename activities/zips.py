"""Generated files (a prototype's zip and its picture, a data export) kept like any upload: one way to build and
store them.

Deterministic bytes (fixed entry dates), so a retried activity stores the same object; the File row is
inserted once (its id is the workflow's), after the workflow has started the file's retention timer.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import tempfile
import uuid
import zipfile
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from activities.storage import Storage
from models.db import insert_if_absent, open_session
from models.tables import File

ZIP_CONTENT_TYPE = "application/zip"


def zip_bytes(entries: Mapping[str, bytes], made_at: datetime, folder: str) -> bytes:
    """The same entries (in the order given) and date give the same bytes."""
    buffer = io.BytesIO()
    stamp = (max(made_at.year, 1980), made_at.month, made_at.day, made_at.hour, made_at.minute, made_at.second)
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries.items():
            info = zipfile.ZipInfo(f"{folder}/{name}", date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, content)
    return buffer.getvalue()


async def keep_generated(
    storage: Storage,
    engine: AsyncEngine,
    content: bytes,
    *,
    file_id: uuid.UUID,
    key: str,
    user_id: uuid.UUID,
    name: str,
    made_at: datetime,
    expires_at: datetime,
    content_type: str = ZIP_CONTENT_TYPE,
) -> str:
    """Store `content` under `key` and insert its File row once; returns its SHA-256."""
    sha256 = hashlib.sha256(content).hexdigest()
    source = await asyncio.to_thread(_write_temporary, content)
    try:
        await storage.put_file(key, source, content_type)
    finally:
        await asyncio.to_thread(source.unlink, missing_ok=True)
    async with open_session(engine) as db:
        await insert_if_absent(
            db,
            File,
            {
                "id": file_id,
                "user_id": user_id,
                "storage_key": key,
                "original_name": name,
                "content_type": content_type,
                "size_bytes": len(content),
                "sha256": sha256,
                "created_at": made_at,
                "expires_at": expires_at,
            },
        )
        await db.commit()
    return sha256


def _write_temporary(content: bytes) -> Path:
    with tempfile.NamedTemporaryFile(prefix="statex-generated-", delete=False) as handle:
        handle.write(content)
    return Path(handle.name)
