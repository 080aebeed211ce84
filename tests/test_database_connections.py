"""Connections without a pre-ping: a connection the server dropped costs one request a 503, not every
checkout a round trip; reads for authentication use autocommit connections from the same pool."""

from __future__ import annotations

import httpx
import psycopg
import sqlalchemy as sa
from conftest import PG_ADMIN_URL
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from api.errors import install_error_handlers
from models.db import Database, create_engine


async def _backend_pid(database: Database) -> int:
    async with database.read() as connection:
        return int((await connection.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one())


async def test_a_dropped_connection_fails_one_read_and_the_pool_recovers(
    database_url: str, engine: AsyncEngine
) -> None:
    database = Database(create_engine(database_url, pool_size=1, max_overflow=0))
    try:
        pid = await _backend_pid(database)
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:  # what a server restart does to it
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        try:
            await _backend_pid(database)
        except sa.exc.DBAPIError as err:
            assert err.connection_invalidated
        assert await _backend_pid(database) != pid  # a new connection, with no pre-ping
    finally:
        await database.engine.dispose()


async def test_reads_are_autocommit_and_sessions_are_not(database_url: str, engine: AsyncEngine) -> None:
    """No BEGIN/ROLLBACK round trips for a read; and the pooled connection is handed back as it was."""
    database = Database(create_engine(database_url, pool_size=1, max_overflow=0))
    try:
        async with database.read() as connection:
            assert (await connection.get_raw_connection()).driver_connection.autocommit
        async with database.session() as session:
            assert not (await (await session.connection()).get_raw_connection()).driver_connection.autocommit
    finally:
        await database.engine.dispose()


async def test_a_lost_database_connection_answers_503_with_retry_after() -> None:
    app = FastAPI()
    install_error_handlers(app, hide_internal_errors=True)

    @app.get("/lost")
    async def lost() -> None:
        raise sa.exc.OperationalError(
            "SELECT 1", {}, Exception("server closed the connection"), connection_invalidated=True
        )

    @app.get("/broken")
    async def broken() -> None:
        raise sa.exc.ProgrammingError("SELECT nonsense", {}, Exception("syntax error"))

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://t"
    ) as http:
        lost_answer = await http.get("/lost")
        assert lost_answer.status_code == 503
        assert lost_answer.headers["retry-after"] == "1"
        assert (await http.get("/broken")).status_code == 500  # any other database error is still a bug
