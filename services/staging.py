"""Rows that come with a workflow: committed first, in a short unit of work, then the workflow starts; if it
certainly did not start, the row is deleted again. No connection is held while Temporal is called. A start
that may have happened (services.temporal decides) keeps its row: the workflow finds it when a worker polls."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypeVar

import psycopg
import sqlalchemy as sa
from sqlmodel import SQLModel

from models.db import Database
from services.errors import IdempotencyKeyInUse

Row = TypeVar("Row", bound=SQLModel)


@asynccontextmanager
async def staged(database: Database, row: Row) -> AsyncIterator[Row]:
    """Commit `row`, then run the block (start its workflow). If the block fails, or the request is cancelled,
    the row is deleted. A concurrent request with the same idempotency key (same row id) loses with a 409."""
    try:
        await database.insert(row)  # one round trip: the row is committed before the workflow is asked for
    except (sa.exc.IntegrityError, psycopg.IntegrityError) as err:  # SQLAlchemy's on SQLite, psycopg's on PostgreSQL
        raise IdempotencyKeyInUse() from err
    try:
        yield row
    except BaseException:
        await asyncio.shield(_delete(database, row))  # finishes even when the request was cancelled
        raise


async def _delete(database: Database, row: SQLModel) -> None:
    table = type(row)
    key = sa.inspect(table).primary_key[0]
    await database.write(sa.delete(table).where(key == getattr(row, key.name)))
