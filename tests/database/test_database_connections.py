"""Connections without a pre-ping: a connection the server dropped costs one request a 503, not every
checkout a round trip; reads for authentication use autocommit connections from the same pool."""

from __future__ import annotations

import asyncio
import uuid
from asyncio import Task
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, timedelta

import httpx
import psycopg
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from helpers import eventually
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel, col

from api.errors import install_error_handlers
from models.db import Database, create_engine
from models.enums import PaymentGateway
from models.tables import Contact, Payment, Prototype, ServiceTier, Session, User
from models.types import utcnow
from services.accounts import LIVE_ACCOUNT


async def _backend_pid(database: Database) -> int:
    async with database.read() as connection:
        return int((await connection.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one())


async def test_a_dropped_connection_fails_one_read_and_the_pool_recovers(
    database_url: str, engine: AsyncEngine, pg_admin_url: str
) -> None:
    database = Database(create_engine(database_url, pool_size=1, max_overflow=0))
    try:
        pid = await _backend_pid(database)
        with psycopg.connect(pg_admin_url, autocommit=True) as admin:  # what a server restart does to it
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


async def test_hot_reads_go_to_the_driver_with_the_same_rows_and_give_their_connections_back(
    database_url: str, engine: AsyncEngine
) -> None:
    """Database.fetch on PostgreSQL keeps half the pool for the driver's own execute: the rows are what
    SQLAlchemy gives (enums, aware UTC moments, ids), a revoked session is gone at once, and close() returns them."""
    plain = Database(create_engine(database_url, pool_size=5, max_overflow=0))  # two may be kept
    through_sqlalchemy = Database(create_engine(database_url, pool_size=1, max_overflow=0))  # none kept
    user = User(email=f"hot-{uuid.uuid4().hex[:8]}@example.com", password_hash="x", tier=ServiceTier.EU_COMPLIANCE)
    session = Session(user_id=user.id, token_hash="0" * 64, expires_at=utcnow() + timedelta(days=1))
    try:
        await plain.insert(user)
        await plain.insert(session)
        values = {"user_id": user.id, "session_id": session.id}
        rows = await plain.fetch(LIVE_ACCOUNT, values)
        assert plain.engine.pool.checkedout() == 1  # kept for the next hot read, not returned
        assert rows == await through_sqlalchemy.fetch(LIVE_ACCOUNT, values)
        assert rows[0]["tier"] is ServiceTier.EU_COMPLIANCE
        assert rows[0]["created_at"].tzinfo is UTC and rows[0]["id"] == user.id
        await plain.write(sa.update(Session).where(col(Session.id) == session.id).values(revoked_at=utcnow()))
        assert await plain.fetch(LIVE_ACCOUNT, values) == []
        await plain.close()
        assert plain.engine.pool.checkedout() == 0
    finally:
        await plain.engine.dispose()
        await through_sqlalchemy.engine.dispose()


async def test_a_dropped_kept_connection_fails_one_hot_read_and_the_next_gets_a_new_one(
    database_url: str, engine: AsyncEngine, pg_admin_url: str
) -> None:
    database = Database(create_engine(database_url, pool_size=5, max_overflow=0))
    backend_pid = sa.select(sa.func.pg_backend_pid().label("pid"))
    try:
        pid = (await database.fetch(backend_pid, {}))[0]["pid"]
        with psycopg.connect(pg_admin_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(sa.exc.DBAPIError) as failed:
            await database.fetch(backend_pid, {})
        assert failed.value.connection_invalidated  # the same 503 as a read through SQLAlchemy
        assert (await database.fetch(backend_pid, {}))[0]["pid"] != pid
        await database.close()
        assert database.engine.pool.checkedout() == 0
    finally:
        await database.engine.dispose()


async def test_rows_inserted_through_the_driver_read_back_as_sqlalchemys_and_a_taken_key_is_an_integrity_error(
    database_url: str, engine: AsyncEngine
) -> None:
    """Database.insert on a kept connection writes what SQLAlchemy writes for the same row (enums by name,
    JSON, a column whose name is not its attribute's, big integers, aware moments, NULLs); a taken key is
    SQLAlchemy's IntegrityError (a 409 in staged()) and a refused value its DataError, each with the connection
    kept for the next write."""
    plain = Database(create_engine(database_url, pool_size=5, max_overflow=0))  # two may be kept
    through_sqlalchemy = Database(create_engine(database_url, pool_size=1, max_overflow=0))  # none kept
    user = User(email=f"rows-{uuid.uuid4().hex[:8]}@example.com", password_hash="x", tier=ServiceTier.EU_COMPLIANCE)

    def rows() -> list[SQLModel]:
        return [
            Payment(
                user_id=user.id,
                amount_minor=12_345_678_901,
                currency="EUR",
                gateway=PaymentGateway.STRIPE,
                tier=ServiceTier.STANDARD,
                details={"note": "ü", "nested": [1, None]},
            ),
            Payment(user_id=user.id, amount_minor=0, currency="CZK", gateway=PaymentGateway.COMGATE, tier=user.tier),
            Prototype(user_id=user.id, idea="An app", steps_done=["plan"], verification={"passed": True}),
            Contact(name="Ada", email="ada@example.com", message="Hi\nthere", user_id=user.id, ip="127.0.0.1"),
            Contact(name="Bo", email="bo@example.com", message="x"),
        ]

    def columns(row: SQLModel) -> dict[str, object]:
        return row.model_dump(exclude={"id", "created_at", "updated_at"})

    try:
        await through_sqlalchemy.insert(user)
        mine, theirs = rows(), rows()
        for row in mine:
            await plain.insert(row)
        assert plain.engine.pool.checkedout() == 1  # they went through the kept connection
        for row in theirs:
            await through_sqlalchemy.insert(row)
        async with through_sqlalchemy.session() as db:
            for written, expected in zip(mine, theirs, strict=True):
                got, want = await db.get(type(written), written.id), await db.get(type(expected), expected.id)
                assert got is not None and want is not None
                assert columns(got) == columns(want) == columns(written)
                assert got.created_at == written.created_at  # type: ignore[attr-defined]
        with pytest.raises(sa.exc.IntegrityError):
            await plain.insert(Contact(id=mine[3].id, name="Again", email="a@example.com", message="x"))
        assert plain.engine.pool.checkedout() == 1  # kept: a refused insert does not spoil an autocommit connection
        with pytest.raises(sa.exc.DataError):  # a value the server refuses (validation keeps NUL out of requests)
            await plain.insert(Contact(name="Nul", email="nul@example.com", message="a\x00b"))
        assert plain.engine.pool.checkedout() == 1
        await plain.insert(Contact(name="After", email="after@example.com", message="x"))
    finally:
        await plain.close()
        await plain.engine.dispose()
        await through_sqlalchemy.engine.dispose()


SLOW_PID = sa.select(sa.func.pg_backend_pid().label("pid"), sa.func.pg_sleep(sa.bindparam("seconds")).label("slept"))


def _slow(database: Database, seconds: float) -> asyncio.Task[list[dict[str, object]]]:
    return asyncio.create_task(database.fetch(SLOW_PID, {"seconds": seconds}))


async def _waiting(database: Database) -> bool:
    return any(not waiter.done() for waiter in database._held_waiters)


@asynccontextmanager
async def _one_kept(database_url: str, pool_timeout: float = 5.0) -> AsyncIterator[Database]:
    """A Database that keeps one connection for hot reads (half a pool of two)."""
    database = Database(create_engine(database_url, pool_size=2, max_overflow=0, pool_timeout=pool_timeout))
    try:
        yield database
    finally:
        await database.close()
        await database.engine.dispose()


async def _busy_then_waiting(database: Database, seconds: float) -> tuple[Task[list[dict[str, object]]], ...]:
    """A read holding the kept connection for `seconds`, and one waiting for it."""
    busy = _slow(database, seconds)
    await eventually(lambda: _opened(database), what="the kept connection in use")
    waiting = _slow(database, 0)
    await eventually(lambda: _waiting(database), what="a read waiting for it")
    return busy, waiting


async def test_hot_reads_beyond_the_kept_connections_wait_for_one_rather_than_take_the_pools_path(
    database_url: str, engine: AsyncEngine
) -> None:
    """The pool's path costs 3x the CPU: taken when every kept connection was busy, it kept a burst going."""
    async with _one_kept(database_url) as database:
        rows = await asyncio.gather(*(_slow(database, 0.05) for _ in range(4)))
        assert len({row[0]["pid"] for row in rows}) == 1  # all on the one kept connection, one after another
        assert database.engine.pool.checkedout() == 1


async def test_a_hot_read_that_waits_longer_than_the_pool_timeout_is_the_pools_timeout_error(
    database_url: str, engine: AsyncEngine
) -> None:
    """sqlalchemy's TimeoutError, as for a pool with no free connection: a 503 (api/errors.py)."""
    async with _one_kept(database_url, pool_timeout=0.2) as database:
        busy, waiting = await _busy_then_waiting(database, 1.0)
        with pytest.raises(sa.exc.TimeoutError):
            await waiting
        await busy
        assert await database.fetch(SLOW_PID, {"seconds": 0}) and database.engine.pool.checkedout() == 1


async def test_a_cancelled_wait_loses_no_kept_connection(database_url: str, engine: AsyncEngine) -> None:
    async with _one_kept(database_url) as database:
        busy, waiting = await _busy_then_waiting(database, 0.3)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        pid = (await busy)[0]["pid"]
        assert (await database.fetch(SLOW_PID, {"seconds": 0}))[0]["pid"] == pid  # given back, and kept
        assert database.engine.pool.checkedout() == 1


async def test_a_kept_connection_lost_mid_query_passes_its_place_to_a_waiting_read(
    database_url: str, engine: AsyncEngine
) -> None:
    """Cancelled with its query in flight, a kept connection is closed; the read waiting for it opens another."""
    async with _one_kept(database_url) as database:
        busy, waiting = await _busy_then_waiting(database, 30)
        busy.cancel()
        with pytest.raises(asyncio.CancelledError):
            await busy
        assert await asyncio.wait_for(waiting, 10)
        assert database.engine.pool.checkedout() == 1


async def _opened(database: Database) -> bool:
    return database._held_open == 1 and not database._held
