"""A user's data export: every row held about them as JSON, and their live files' bytes, in one zip.

Stored like any file (the workflow has started its 24-hour retention timer first). The same rows give the same
bytes: entries are sorted, JSON keys are sorted and every entry carries the export's own date, so a retried
activity stores the same object again and the File row, keyed by the workflow's file id, is inserted once.
Sessions leave out their token hashes: a secret is not personal data the user needs, and would be one to steal.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel, col, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.storage import Storage, sign_download, storage_key
from activities.zips import keep_generated, zip_bytes
from models.db import open_session
from models.messages.privacy import ExportPackage, PackagedExport
from models.tables import (
    AIResponse,
    Contact,
    File,
    Payment,
    Prototype,
    PrototypeRevision,
    Session,
    User,
    contacts_owned_by,
    verified_address,
)
from settings import Settings

FOLDER = "statex-export"
_SECRETS: dict[type[SQLModel], set[str]] = {User: {"password_hash"}, Session: {"token_hash"}}


def export_file_id(export_id: uuid.UUID) -> uuid.UUID:
    """The zip's file id: derived, so a replayed or retried workflow names the same file."""
    return uuid.uuid5(uuid.UUID("3f0c7a52-1e7b-4c55-9d0e-6b1f3c2a8e41"), f"export-{export_id}")


def _rows(rows: list[Any]) -> str:
    dumped = [row.model_dump(mode="json", exclude=_SECRETS.get(type(row), set())) for row in rows]
    return json.dumps(dumped, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _readme(package: ExportPackage, names: list[str]) -> bytes:
    lines = [
        "# Everything Statex holds about you",
        "",
        f"Made on {package.made_at:%Y-%m-%d %H:%M} UTC; this download is deleted at "
        f"{package.expires_at:%Y-%m-%d %H:%M} UTC.",
        "",
        "Each JSON file lists rows of one kind; `files/` holds the bytes of your files that are still kept.",
        "Sessions are listed without their secrets. Amounts are minor units; AI costs are micro-dollars.",
        "",
        *(f"- `{name}`" for name in names),
        "",
    ]
    return "\n".join(lines).encode()


class ExportActivities:
    def __init__(self, storage: Storage, engine: AsyncEngine, settings: Settings) -> None:
        self.storage = storage
        self.engine = engine
        self.settings = settings

    async def _entries(self, package: ExportPackage) -> tuple[str, dict[str, bytes]]:
        """The user's address and every entry of the zip, read in one short unit of work (bytes after it)."""
        user_id = package.user_id
        async with open_session(self.engine) as db:
            user = await db.get(User, user_id)
            if user is None:
                raise ApplicationError("The account no longer exists", type="AccountGone", non_retryable=True)

            async def all_of(table: type[SQLModel], *where: Any) -> list[Any]:
                order = (col(table.created_at), col(table.id))  # type: ignore[attr-defined]
                return list((await db.exec(select(table).where(*where).order_by(*order))).all())

            tables = {
                "account.json": [user],
                "sessions.json": await all_of(Session, col(Session.user_id) == user_id),
                "ai_requests.json": await all_of(AIResponse, col(AIResponse.user_id) == user_id),
                "prototypes.json": await all_of(Prototype, col(Prototype.user_id) == user_id),
                "prototype_revisions.json": await all_of(PrototypeRevision, col(PrototypeRevision.user_id) == user_id),
                "payments.json": await all_of(Payment, col(Payment.user_id) == user_id),
                "contact_messages.json": await all_of(Contact, contacts_owned_by(user_id, verified_address(user))),
                "files.json": await all_of(File, col(File.user_id) == user_id, col(File.id) != package.file_id),
            }
            live = [file for file in tables["files.json"] if file.deleted_at is None]
            email = user.email
        entries = {name: _rows(rows).encode() for name, rows in tables.items()}
        for file in live:
            if await self.storage.exists(file.storage_key):  # its timer may have just run
                chunks = [chunk async for chunk in await self.storage.open(file.storage_key)]
                entries[f"files/{file.id}/{file.original_name}"] = b"".join(chunks)
        entries["README.md"] = _readme(package, sorted(entries))
        return email, entries

    @activity.defn
    async def package_export(self, package: ExportPackage) -> PackagedExport:
        """Zip, store under the file's key, then insert its File row (once: the id is the workflow's).
        The workflow has started the file's retention timer before calling this."""
        email, entries = await self._entries(package)
        content = await asyncio.to_thread(zip_bytes, dict(sorted(entries.items())), package.made_at, FOLDER)
        sha256 = await keep_generated(
            self.storage,
            self.engine,
            content,
            file_id=package.file_id,
            key=package.storage_key or storage_key(package.file_id),
            user_id=package.user_id,
            name=f"statex-export-{package.made_at:%Y%m%d}.zip",
            made_at=package.made_at,
            expires_at=package.expires_at,
        )
        return PackagedExport(
            file_id=package.file_id,
            size=len(content),
            sha256=sha256,
            names=sorted(entries),
            download_token=sign_download(self.settings, package.file_id, package.expires_at),
            email=email,
        )
