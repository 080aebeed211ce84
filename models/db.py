"""The database engine, sessions and migrations (Alembic, applied on start)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from settings import Settings

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
_MIGRATION_LOCK_ID = 0x5747_4558  # any constant: serialises migrations of processes starting together
RECYCLE_SECONDS = 1800  # under any server or proxy idle timeout, so a pooled connection is rarely found dead


def create_engine(url: str, *, pool_size: int = 20, max_overflow: int = 0, pool_timeout: float = 5.0) -> AsyncEngine:
    """A bounded pool that refuses quickly: a request waits `pool_timeout` for a connection, never 30 s."""
    pool = {"pool_size": pool_size, "max_overflow": max_overflow, "pool_timeout": pool_timeout}
    if url.startswith("sqlite"):
        database = url.split(":///", 1)[-1]
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30}, poolclass=sa.AsyncAdaptedQueuePool, **pool)

        @sa.event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    # No pre-ping (a round trip on every checkout): connections are recycled before idle timeouts close them,
    # and a connection that died anyway invalidates the pool; that one request answers 503 (api/errors.py).
    return create_async_engine(url, pool_recycle=RECYCLE_SECONDS, **pool)


def engine_for(settings: Settings) -> AsyncEngine:
    return create_engine(
        settings.effective_database_url,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_pool_overflow,
        pool_timeout=settings.database_pool_timeout_seconds,
    )


class Query:
    """A Core SELECT (or a table's INSERT) compiled once for a dialect, with its parameters' and columns' type
    conversions (the same ones SQLAlchemy applies), so that it can go to the driver as it is (Database.fetch,
    Database.insert)."""

    def __init__(self, statement: sa.Select[*tuple[Any, ...]] | sa.Insert, dialect: sa.Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        self.defaults = dict(compiled.params)
        # The dialect's own type (psycopg's JSON, say), whose conversions SQLAlchemy's execute would apply.
        self.binds = {
            name: bind.type.dialect_impl(dialect).bind_processor(dialect) for name, bind in compiled.binds.items()
        }
        selected = statement.selected_columns.items() if isinstance(statement, sa.Select) else []
        self.columns = [
            (name, column.type.dialect_impl(dialect).result_processor(dialect, None)) for name, column in selected
        ]

    def parameters(self, values: Mapping[str, Any]) -> dict[str, Any]:
        merged = {**self.defaults, **values}
        return {
            name: (process(value) if (process := self.binds.get(name)) is not None else value)
            for name, value in merged.items()
        }

    def row(self, values: tuple[Any, ...]) -> dict[str, Any]:
        return {
            name: value if process is None else process(value)
            for (name, process), value in zip(self.columns, values, strict=True)
        }


class _Held:
    """A pooled autocommit connection kept out of the pool for the hot reads, and when it was last used."""

    def __init__(self, connection: AsyncConnection, driver: Any) -> None:
        self.connection, self.driver, self.used = connection, driver, time.monotonic()


class Database:
    """Short units of work: `async with database.session() as db:` query, commit, and the connection goes
    back to the pool at the end of the block. Never keep one open across an await on the network."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sessions = session_factory(engine)
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")  # the same pool
        # Hot reads on PostgreSQL through psycopg go to the driver on connections kept for them (half the pool,
        # taken from it, so the process's bound is unchanged): a Core read through SQLAlchemy's connection, pool
        # checkout and result costs about three times the CPU of the driver's execute (docs/benchmarks.md). When
        # all are busy a query waits for one (each is back within a millisecond or so) rather than take the pool's
        # path: that path, taken just when the process is busiest, keeps a burst going.
        plain = engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg"
        pool = engine.pool
        self._held_most = pool.size() // 2 if plain and isinstance(pool, sa.QueuePool) else 0
        self._held_wait = pool.timeout() if isinstance(pool, sa.QueuePool) else 0.0
        self._held: list[_Held] = []
        self._held_open = 0
        self._held_waiters: deque[asyncio.Future[_Held | None]] = deque()
        self._queries: dict[object, Query] = {}

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self._sessions() as session:
            yield session

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read of one statement that needs no transaction: on an autocommit connection it is one round
        trip, without the BEGIN and ROLLBACK of a session. Core statements; nothing is written here."""
        async with self._autocommit.connect() as connection:
            yield connection

    async def fetch(self, statement: sa.Select[*tuple[Any, ...]], values: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The rows of a read that needs no transaction, as dicts of converted values. For the statements every
        signed-in request runs (built once at import): on PostgreSQL through psycopg it goes to the driver on a
        kept connection (waiting for one when all are busy); otherwise as `read` does."""
        held = await self._take_held()
        if held is None:
            async with self.read() as connection:
                return [dict(row._mapping) for row in await connection.execute(statement, dict(values))]
        query = self._query(statement, lambda: statement)
        return [query.row(row) for row in await self._on_held(held, query, values)]

    async def _on_held(self, held: _Held, query: Query, values: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Run `query` on a kept connection and give it back; its rows if it has any. A failure raises what
        SQLAlchemy would have raised, so callers and the error handlers see no difference."""
        parameters = query.parameters(values)
        try:
            cursor = await held.driver.execute(query.sql, parameters)
            rows = await cursor.fetchall() if query.columns else []
        except BaseException as err:
            import psycopg

            statement_failed = isinstance(err, psycopg.Error) and not isinstance(err, _driver_errors())
            if statement_failed:  # a taken key, a value the server refused: an autocommit connection is still fine
                self._give_back(held)
            else:  # the connection failed, or the request was cancelled with a query in flight: never reused
                self._held_open -= 1
                self._wake_one()  # a waiter may open one in its place
                await held.connection.invalidate()  # as SQLAlchemy does with a connection that failed
                await held.connection.close()
            if isinstance(err, psycopg.Error):  # as SQLAlchemy wraps it: IntegrityError (409 in staged), a lost
                raise sa.exc.DBAPIError.instance(  # connection's OperationalError (503 in api/errors.py), ...
                    query.sql, parameters, err, psycopg.Error, connection_invalidated=not statement_failed
                ) from err
            raise
        self._give_back(held)
        return rows

    def _give_back(self, held: _Held) -> None:
        """To the first query still waiting for one, else to the kept ones."""
        held.used = time.monotonic()
        while self._held_waiters:
            waiter = self._held_waiters.popleft()
            if not waiter.done():  # a waiter that timed out or was cancelled is skipped
                waiter.set_result(held)
                return
        self._held.append(held)

    def _wake_one(self) -> None:
        """A kept connection closed (or failed to open): its place goes to the first waiter, which opens one."""
        while self._held_waiters:
            waiter = self._held_waiters.popleft()
            if not waiter.done():
                self._held_open += 1
                waiter.set_result(None)
                return

    def _query(self, key: object, statement: Callable[[], sa.Select[*tuple[Any, ...]] | sa.Insert]) -> Query:
        """Compiled once per key: a statement built at import, or a table for its INSERT."""
        query = self._queries.get(key)
        if query is None:
            query = self._queries[key] = Query(statement(), self.engine.dialect)
        return query

    async def _take_held(self) -> _Held | None:
        """A kept connection; None where there are none (not PostgreSQL through psycopg): use the pool. When all
        are busy, waits for one up to the pool's own timeout, then raises the pool's TimeoutError (a 503)."""
        while self._held:
            held = self._held.pop()
            if time.monotonic() - held.used < RECYCLE_SECONDS:
                return held
            self._held_open -= 1  # idle long enough that a server or proxy may have closed it: back to the pool,
            await held.connection.close()  # which recycles it
        if not self._held_most:
            return None
        if self._held_open < self._held_most:
            self._held_open += 1
        else:
            given = await self._wait_for_held()
            if given is not None:
                return given  # else a kept one closed, and its place was passed to this query: open one
        try:
            connection = await self._autocommit.connect()
            driver = (await connection.get_raw_connection()).driver_connection
        except BaseException:
            self._held_open -= 1
            self._wake_one()
            raise
        return _Held(connection, driver)

    async def _wait_for_held(self) -> _Held | None:
        """The next kept connection given back, or None with the place of one that closed (already counted)."""
        waiter: asyncio.Future[_Held | None] = asyncio.get_running_loop().create_future()
        self._held_waiters.append(waiter)
        try:
            async with asyncio.timeout(self._held_wait):
                return await waiter
        except BaseException as err:
            if waiter.done() and not waiter.cancelled():  # given to this query just as it gave up: pass it on
                given = waiter.result()
                if given is not None:
                    self._give_back(given)
                else:
                    self._held_open -= 1
                    self._wake_one()
            if isinstance(err, TimeoutError):
                raise sa.exc.TimeoutError(f"no kept connection was free within {self._held_wait:g} s") from None
            raise

    async def close(self) -> None:
        """Give the kept connections back to the pool (before the engine is disposed)."""
        while self._held:
            self._held_open -= 1
            await self._held.pop().connection.close()

    async def warm(self, connections: int) -> None:
        """Open `connections` now, so that the first burst of requests does not open them, each a new server
        process, while the requests wait. Best effort: a database that is not there yet is the requests' 503.
        SQLite's connections are a file open away (and each a thread): nothing to warm."""
        if self.engine.dialect.name == "sqlite":
            return
        try:
            async with AsyncExitStack() as held:
                for _ in range(connections):
                    await held.enter_async_context(self.engine.connect())
        except (sa.exc.OperationalError, sa.exc.InterfaceError, OSError) as err:
            log.warning("the database pool was not warmed: %s", err)

    async def write(self, statement: sa.Executable, parameters: dict[str, Any] | None = None) -> None:
        """One statement that commits by itself (autocommit): one round trip, without a session's BEGIN, COMMIT
        and unit of work. For a write that is whole in one statement, such as inserting one row."""
        async with self._autocommit.connect() as connection:
            await connection.execute(statement, parameters)

    async def insert(self, row: SQLModel) -> None:
        """Insert `row` as it stands (every column from its attributes), in one round trip; an IntegrityError
        if its key is taken. The object stays a plain value: it never joins a session. On a kept connection
        where there is one (as `fetch`): SQLAlchemy's execute is over a quarter of a contact request's CPU."""
        mapper = sa.inspect(type(row))
        table = mapper.local_table
        values = {prop.columns[0].key: getattr(row, prop.key) for prop in mapper.column_attrs}
        held = await self._take_held()
        if held is None:
            await self.write(sa.insert(table), values)
            return
        await self._on_held(held, self._query(table, lambda: sa.insert(table)), values)


def _driver_errors() -> tuple[type[Exception], ...]:
    import psycopg

    return (psycopg.OperationalError, psycopg.InterfaceError)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


@asynccontextmanager
async def open_session(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    async with session_factory(engine)() as session:
        yield session


def alembic_config() -> Config:
    """Alembic is imported here, not at the top: an API process started with RUN_MIGRATIONS_ON_START=false (each
    of `statex api`'s processes) never loads it."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


async def migrate(engine: AsyncEngine) -> None:
    """Upgrade to the latest revision. On PostgreSQL an advisory lock lets several processes start at once."""
    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            await connection.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
        await connection.run_sync(_upgrade)


async def migrate_database(settings: Settings) -> None:
    """`migrate` on an engine of its own, disposed of after: for the commands that migrate before starting."""
    engine = create_engine(settings.effective_database_url)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()


def _upgrade(connection: sa.Connection) -> None:
    from alembic import command

    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "heads")  # every branch: features add their own migrations


async def insert_if_absent(db: AsyncSession, table: type[SQLModel], values: dict[str, Any]) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING: the idempotent write a retried activity needs. True if it inserted
    (what a metric counts, so that a retry is not counted twice)."""
    dialect_insert = pg_insert if db.get_bind().dialect.name == "postgresql" else sqlite_insert
    result = await db.exec(dialect_insert(table).values(**values).on_conflict_do_nothing())  # type: ignore[call-overload]
    return bool(result.rowcount)
