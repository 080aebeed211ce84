"""The tables and the Alembic migrations describe the same schema, on PostgreSQL and on SQLite."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel

import models.tables  # noqa: F401  (registers the tables)
from models.db import create_engine, migrate


async def _differences(engine: AsyncEngine) -> list[object]:
    async with engine.connect() as connection:
        return await connection.run_sync(
            lambda sync: compare_metadata(
                MigrationContext.configure(sync, opts={"compare_type": True, "compare_server_default": True}),
                SQLModel.metadata,
            )
        )


async def test_migrations_match_the_models_on_postgresql(engine: AsyncEngine) -> None:
    assert await _differences(engine) == []


async def test_migrations_match_the_models_on_sqlite(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'statex.sqlite3'}")
    try:
        await migrate(engine)
        await migrate(engine)  # applying again is a no-op
        assert await _differences(engine) == []
    finally:
        await engine.dispose()
