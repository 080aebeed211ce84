"""Connections without a pre-ping: a connection the server dropped costs one request a 503, not every
checkout a round trip; reads for authentication use autocommit connections, through SQLAlchemy's pool or, on
PostgreSQL, psycopg's hot pool beside it."""

from __future__ import annotations

import asyncio
import time
import uuid
from asyncio import Task
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, timedelta

import httpx
import psycopg
import psycopg_pool
import pytest
import sqlalchemy as sa
from conftest import AppFactory
from fastapi import FastAPI
from helpers import bearer, eventually, register_and_login, serve
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel, col

from api.errors import install_error_handlers
from models.db import Database, create_engine, hot_pool
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

    @app.get("/hot-lost")
    async def hot_lost() -> None:  # what the hot pool's connections raise (psycopg's own errors)
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    @app.get("/hot-busy")
    async def hot_busy() -> None:
        raise psycopg_pool.PoolTimeout("couldn't get a connection after 5.00 sec")

    @app.get("/hot-broken")
    async def hot_broken() -> None:
        raise psycopg.errors.SyntaxError("syntax error")

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://t"
    ) as http:
        for path in ("/lost", "/hot-lost", "/hot-busy"):
            answer = await http.get(path)
            assert (answer.status_code, answer.headers.get("retry-after")) == (503, "1"), path
        assert "busy" in (await http.get("/hot-busy")).json()["error"]
        assert (await http.get("/broken")).status_code == 500  # any other database error is still a bug
        assert (await http.get("/hot-broken")).status_code == 500


@asynccontextmanager
async def _with_hot_pool(database_url: str, hot: int = 2, pool_timeout: float = 5.0) -> AsyncIterator[Database]:
    """A Database whose hot statements go to a psycopg pool of `hot` connections (SQLAlchemy keeps one)."""
    database = Database(
        create_engine(database_url, pool_size=1, max_overflow=0, pool_timeout=pool_timeout),
        hot_pool(database_url, hot, pool_timeout),
    )
    await database.open()
    try:
        yield database
    finally:
        await database.close()
        await database.engine.dispose()


def _stats(database: Database) -> dict[str, int]:
    assert database.hot is not None
    return database.hot.get_stats()


def _in_use(database: Database) -> int:
    stats = _stats(database)
    return stats["pool_size"] - stats["pool_available"]


async def test_hot_reads_go_to_the_driver_with_the_same_rows_and_give_their_connections_back(
    database_url: str, engine: AsyncEngine
) -> None:
    """Database.fetch on PostgreSQL goes to the hot pool's connections: the rows are what SQLAlchemy gives (enums,
    aware UTC moments, ids), a revoked session is gone at once, and the connection is back in the pool."""
    through_sqlalchemy = Database(create_engine(database_url, pool_size=1, max_overflow=0))  # no hot pool
    user = User(email=f"hot-{uuid.uuid4().hex[:8]}@example.com", password_hash="x", tier=ServiceTier.EU_COMPLIANCE)
    session = Session(user_id=user.id, token_hash="0" * 64, expires_at=utcnow() + timedelta(days=1))
    try:
        async with _with_hot_pool(database_url) as plain:
            await plain.insert(user)
            await plain.insert(session)
            values = {"user_id": user.id, "session_id": session.id}
            rows = await plain.fetch(LIVE_ACCOUNT, values)
            assert plain.engine.pool.checkedout() == 0  # not SQLAlchemy's pool
            assert _stats(plain)["pool_available"] == _stats(plain)["pool_size"] == 1  # opened once, given back
            assert rows == await through_sqlalchemy.fetch(LIVE_ACCOUNT, values)
            assert rows[0]["tier"] is ServiceTier.EU_COMPLIANCE
            assert rows[0]["created_at"].tzinfo is UTC and rows[0]["id"] == user.id
            await plain.write(sa.update(Session).where(col(Session.id) == session.id).values(revoked_at=utcnow()))
            assert await plain.fetch(LIVE_ACCOUNT, values) == []
        assert plain.hot is not None and plain.hot.closed
    finally:
        await through_sqlalchemy.engine.dispose()


BACKEND_PID = sa.select(sa.func.pg_backend_pid().label("pid"))


async def _terminate(pg_admin_url: str, pid: int) -> None:
    """What a server restart or an idle timeout does to a connection; returns once the backend is gone."""
    async with await psycopg.AsyncConnection.connect(pg_admin_url, autocommit=True) as admin:
        await admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))


async def test_a_dropped_hot_connection_fails_one_read_and_the_next_gets_a_new_one(
    database_url: str, engine: AsyncEngine, pg_admin_url: str
) -> None:
    async with _with_hot_pool(database_url, hot=1) as database:
        pid = (await database.fetch(BACKEND_PID, {}))[0]["pid"]
        await _terminate(pg_admin_url, pid)
        with pytest.raises(psycopg.OperationalError):  # a 503 (api/errors.py), as through SQLAlchemy
            await database.fetch(BACKEND_PID, {})
        assert (await database.fetch(BACKEND_PID, {}))[0]["pid"] != pid
        assert _stats(database)["pool_available"] == _stats(database)["pool_size"] == 1


async def test_rows_inserted_through_the_driver_read_back_as_sqlalchemys_and_a_taken_key_is_an_integrity_error(
    database_url: str, engine: AsyncEngine
) -> None:
    """Database.insert on the hot pool writes what SQLAlchemy writes for the same row (enums by name, JSON, a
    column whose name is not its attribute's, big integers, aware moments, NULLs); a taken key is psycopg's
    IntegrityError (a 409 in staged()) and a refused value its DataError, the connection kept for the next."""
    through_sqlalchemy = Database(create_engine(database_url, pool_size=1, max_overflow=0))  # no hot pool
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
        async with _with_hot_pool(database_url, hot=1) as plain:
            await through_sqlalchemy.insert(user)
            mine, theirs = rows(), rows()
            for row in mine:
                await plain.insert(row)
            assert plain.engine.pool.checkedout() == 0 and _stats(plain)["pool_size"] == 1  # the hot connection
            for row in theirs:
                await through_sqlalchemy.insert(row)
            async with through_sqlalchemy.session() as db:
                for written, expected in zip(mine, theirs, strict=True):
                    got, want = await db.get(type(written), written.id), await db.get(type(expected), expected.id)
                    assert got is not None and want is not None
                    assert columns(got) == columns(want) == columns(written)
                    assert got.created_at == written.created_at  # type: ignore[attr-defined]
            pid = (await plain.fetch(BACKEND_PID, {}))[0]["pid"]
            with pytest.raises(psycopg.IntegrityError):
                await plain.insert(Contact(id=mine[3].id, name="Again", email="a@example.com", message="x"))
            with pytest.raises(psycopg.DataError):  # a value refused (validation keeps NUL out of requests)
                await plain.insert(Contact(name="Nul", email="nul@example.com", message="a\x00b"))
            await plain.insert(Contact(name="After", email="after@example.com", message="x"))
            assert (await plain.fetch(BACKEND_PID, {}))[0]["pid"] == pid  # a refused insert spoils no connection
    finally:
        await through_sqlalchemy.engine.dispose()


SLOW_PID = sa.select(sa.func.pg_backend_pid().label("pid"), sa.func.pg_sleep(sa.bindparam("seconds")).label("slept"))


def _slow(database: Database, seconds: float) -> asyncio.Task[list[dict[str, object]]]:
    return asyncio.create_task(database.fetch(SLOW_PID, {"seconds": seconds}))


async def _busy_then_waiting(database: Database, seconds: float) -> tuple[Task[list[dict[str, object]]], ...]:
    """A read holding the one hot connection for `seconds`, and one waiting for it."""
    busy = _slow(database, seconds)
    await eventually(lambda: asyncio.sleep(0, _in_use(database) == 1), what="the hot connection in use")
    waiting = _slow(database, 0)
    await eventually(lambda: asyncio.sleep(0, _stats(database)["requests_waiting"] == 1), what="a read waiting")
    return busy, waiting


async def test_hot_reads_beyond_the_pools_connections_wait_for_one(database_url: str, engine: AsyncEngine) -> None:
    """Not SQLAlchemy's path, 3x the CPU: taken when every hot connection was busy, it kept a burst going."""
    async with _with_hot_pool(database_url, hot=1) as database:
        rows = await asyncio.gather(*(_slow(database, 0.05) for _ in range(4)))
        assert len({row[0]["pid"] for row in rows}) == 1  # all on the one connection, one after another
        assert database.engine.pool.checkedout() == 0


async def test_a_hot_read_that_waits_longer_than_the_pool_timeout_is_a_pool_timeout(
    database_url: str, engine: AsyncEngine
) -> None:
    """psycopg_pool's PoolTimeout: a 503 (api/errors.py); the pool serves the next read as usual."""
    async with _with_hot_pool(database_url, hot=1, pool_timeout=0.2) as database:
        busy, waiting = await _busy_then_waiting(database, 1.0)
        with pytest.raises(psycopg_pool.PoolTimeout):
            await waiting
        await busy
        assert await database.fetch(SLOW_PID, {"seconds": 0}) and _stats(database)["pool_size"] == 1


async def test_a_cancelled_wait_loses_no_hot_connection(database_url: str, engine: AsyncEngine) -> None:
    async with _with_hot_pool(database_url, hot=1) as database:
        busy, waiting = await _busy_then_waiting(database, 0.3)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        pid = (await busy)[0]["pid"]
        assert (await database.fetch(SLOW_PID, {"seconds": 0}))[0]["pid"] == pid  # given back, and kept
        assert _stats(database)["pool_size"] == 1


async def _running(database_url: str, text: str) -> int:
    """Queries of the test database whose text has `text`, still running or waiting on the server."""
    plain = sa.make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    async with await psycopg.AsyncConnection.connect(plain, autocommit=True) as admin:
        cursor = await admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state = 'active'"
            " AND pid <> pg_backend_pid() AND position(%s in query) > 0",
            (text,),
        )
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def test_a_hot_read_cancelled_mid_query_leaves_no_query_running_and_a_waiting_read_is_served(
    database_url: str, engine: AsyncEngine
) -> None:
    """Cancelled with its query in flight, the connection is not given to the next read while the server still
    runs it: psycopg cancels the query on the server first (else the pool closes the connection)."""
    async with _with_hot_pool(database_url, hot=1) as database:
        busy, waiting = await _busy_then_waiting(database, 30)
        busy.cancel()
        with pytest.raises(asyncio.CancelledError):
            await busy
        assert await asyncio.wait_for(waiting, 10)
        assert await _running(database_url, "pg_sleep") == 0
        assert _stats(database)["pool_size"] == 1


def _database(app: FastAPI) -> Database:
    database: Database = app.state.runtime.database
    assert database.hot is not None, "the app's hot statements go to psycopg's pool on PostgreSQL"
    return database


async def test_a_request_finding_every_connection_busy_answers_503_within_the_timeout_and_the_next_is_served(
    make_app: AppFactory,
) -> None:
    app = make_app(database_pool_size=2, database_pool_overflow=0, database_pool_timeout_seconds=1)
    async with serve(app) as api:
        account = await register_and_login(api)
        database = _database(app)
        assert database.hot is not None
        async with AsyncExitStack() as held:  # both pools' connections, one each, taken by someone else
            await held.enter_async_context(database.hot.connection())
            await held.enter_async_context(database.engine.connect())
            started = time.monotonic()
            busy = await api.get("/auth/me", headers=bearer(account["access_token"]))
            waited = time.monotonic() - started
            assert (busy.status_code, busy.headers["retry-after"]) == (503, "1"), busy.text
            assert 0.9 <= waited < 3  # the pool timeout, then the answer
        me = await api.get("/auth/me", headers=bearer(account["access_token"]))
        assert me.status_code == 200, me.text


async def test_after_the_server_kills_a_hot_connection_one_request_answers_503_and_the_next_is_served(
    make_app: AppFactory, pg_admin_url: str
) -> None:
    """No pre-ping: the request that draws the dead connection finds out (a 503 with Retry-After, as through
    SQLAlchemy's pool); the pool closes that connection and the next request is served on a new one."""
    app = make_app(database_pool_size=2, database_pool_overflow=0)  # one hot connection
    async with serve(app) as api:
        account = await register_and_login(api)
        database = _database(app)
        assert database.hot is not None
        async with database.hot.connection() as connection:
            pid = connection.info.backend_pid  # the one the requests have used (no query: it stays as it was)
        await _terminate(pg_admin_url, pid)
        first = await api.get("/auth/me", headers=bearer(account["access_token"]))
        assert (first.status_code, first.headers["retry-after"]) == (503, "1"), first.text
        for _ in range(3):
            me = await api.get("/auth/me", headers=bearer(account["access_token"]))
            assert me.status_code == 200, me.text
        async with database.hot.connection() as connection:
            assert connection.info.backend_pid != pid


async def test_ten_requests_cancelled_mid_query_leak_no_connection(make_app: AppFactory, database_url: str) -> None:
    """Ten /auth/me requests wait on a locked table with every hot connection; cancelled (the client gone), their
    queries are cancelled on the server, the pool is whole and idle again, and a request is served at once."""
    app = make_app(database_pool_size=20, database_pool_overflow=0, rate_limit_enabled=False)  # ten hot
    async with serve(app) as api:
        account = await register_and_login(api)
        database = _database(app)
        plain = sa.make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
        async with await psycopg.AsyncConnection.connect(plain) as locker:  # a transaction, open until rollback
            await locker.execute(f"LOCK TABLE {Session.__tablename__} IN ACCESS EXCLUSIVE MODE")
            requests = [
                asyncio.create_task(api.get("/auth/me", headers=bearer(account["access_token"]))) for _ in range(10)
            ]
            await eventually(lambda: asyncio.sleep(0, _in_use(database) == 10), what="ten hot connections in use")
            await eventually(lambda: _running(database_url, "sessions"), what="the reads waiting on the server")
            for request in requests:
                request.cancel()
            await asyncio.gather(*requests, return_exceptions=True)
            assert await _running(database_url, "sessions") == 0  # cancelled on the server, with the lock still held
            await locker.rollback()
        stats = _stats(database)
        assert (stats["pool_size"], stats["pool_available"], stats["requests_waiting"]) == (10, 10, 0)
        async with asyncio.timeout(2):
            me = await api.get("/auth/me", headers=bearer(account["access_token"]))
        assert me.status_code == 200, me.text
