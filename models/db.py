"""The database engine, sessions and migrations (Alembic, applied on start)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import sqlalchemy as sa
from psycopg_pool import AsyncConnectionPool
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

HotPool = AsyncConnectionPool[psycopg.AsyncConnection[tuple[Any, ...]]]


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


def hot_pool(url: str, size: int, timeout: float = 5.0) -> HotPool:
    """psycopg's own pool of autocommit connections for Database.fetch and insert, opened by Database.open.
    It grows to `size` on demand (all at once when warmed); a request waits `timeout` for a connection, then
    PoolTimeout (a 503). A connection that failed is closed and replaced; a query cancelled mid-flight (its
    client gone) is cancelled on the server by psycopg, or its connection closed, before it is handed out again.
    As with SQLAlchemy's pool, no check on checkout: connections are replaced before idle timeouts close them."""
    conninfo = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    return AsyncConnectionPool(
        conninfo,
        kwargs={"autocommit": True},
        min_size=0,
        max_size=size,
        timeout=timeout,
        max_lifetime=RECYCLE_SECONDS,
        open=False,
        name="hot",
    )


def engine_for(settings: Settings, *, hot: int = 0) -> AsyncEngine:
    """SQLAlchemy's pool with the process's DATABASE_POOL_SIZE connections, less the `hot` ones psycopg's pool has."""
    return create_engine(
        settings.effective_database_url,
        pool_size=settings.database_pool_size - hot,
        max_overflow=settings.database_pool_overflow,
        pool_timeout=settings.database_pool_timeout_seconds,
    )


def database_for(settings: Settings) -> Database:
    """The process's connections, DATABASE_POOL_SIZE in all (plus SQLAlchemy's overflow): on PostgreSQL through
    psycopg half of them (rounded down) are the hot pool, the rest SQLAlchemy's pool; on SQLite all are its."""
    url, size = settings.effective_database_url, settings.database_pool_size
    hot = size // 2 if sa.make_url(url).get_driver_name() == "psycopg" else 0
    engine = engine_for(settings, hot=hot)
    return Database(engine, hot_pool(url, hot, settings.database_pool_timeout_seconds) if hot else None)


class Query:
    """A Core SELECT (or a table's INSERT) compiled once for a dialect, with its parameters' and columns' type
    conversions (the same ones SQLAlchemy applies), so that it can go to the driver as it is."""

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


class Database:
    """Short units of work: `async with database.session() as db:` query, commit, and the connection goes
    back to the pool at the end of the block. Never keep one open across an await on the network.

    The statements every signed-in request runs (`fetch`) and single-row inserts (`insert`) go, where there is
    a hot pool (PostgreSQL), straight to psycopg on its autocommit connections: SQLAlchemy's connection, pool
    checkout and result cost about three times the CPU of the driver's execute (docs/benchmarks.md). Their
    errors are then psycopg's (api/errors.py and services/staging.py handle both kinds)."""

    def __init__(self, engine: AsyncEngine, hot: HotPool | None = None) -> None:
        self.engine = engine
        self.hot = hot
        self._sessions = session_factory(engine)
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")  # the same pool
        self._queries: dict[object, Query] = {}

    async def open(self, *, warm: bool = False) -> None:
        """Start the hot pool. `warm`: open every connection now, so that the first burst of requests does not
        open them, each a new server process, while it waits (the hot pool's then stay open, replaced as they
        age). Best effort: a database that is not there yet is the requests' 503."""
        if self.hot is not None:
            await self.hot.open()
            if warm:
                await self.hot.resize(self.hot.max_size)  # filled in the background
        if not warm or self.engine.dialect.name == "sqlite":  # SQLite's are a file open away (and each a thread)
            return
        try:
            async with AsyncExitStack() as held:
                for _ in range(self.engine.pool.size()):  # type: ignore[attr-defined]
                    await held.enter_async_context(self.engine.connect())
        except (sa.exc.OperationalError, sa.exc.InterfaceError, OSError) as err:
            log.warning("the database pool was not warmed: %s", err)

    async def close(self) -> None:
        """Close the hot pool (the engine is disposed by its owner)."""
        if self.hot is not None:
            await self.hot.close()

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

    async def write(self, statement: sa.Executable, parameters: dict[str, Any] | None = None) -> None:
        """One statement that commits by itself (autocommit): one round trip, without a session's BEGIN, COMMIT
        and unit of work. For a write that is whole in one statement, such as inserting one row."""
        async with self._autocommit.connect() as connection:
            await connection.execute(statement, parameters)

    async def fetch(self, statement: sa.Select[*tuple[Any, ...]], values: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The rows of a read that needs no transaction, as dicts of converted values. For statements built once
        at import: each is compiled once for the hot pool."""
        if self.hot is None:
            async with self.read() as connection:
                return [dict(row._mapping) for row in await connection.execute(statement, dict(values))]
        query = self._query(statement)
        async with self.hot.connection() as connection:
            rows = await (await connection.execute(query.sql, query.parameters(values))).fetchall()
        return [query.row(row) for row in rows]

    async def insert(self, row: SQLModel) -> None:
        """Insert `row` as it stands (every column from its attributes), in one round trip; an IntegrityError
        (SQLAlchemy's or psycopg's) if its key is taken. The object stays a plain value: it never joins a session."""
        mapper = sa.inspect(type(row))
        values = {prop.columns[0].key: getattr(row, prop.key) for prop in mapper.column_attrs}
        if self.hot is None:
            await self.write(sa.insert(mapper.local_table), values)
            return
        query = self._query(mapper.local_table)
        async with self.hot.connection() as connection:
            await connection.execute(query.sql, query.parameters(values))

    def _query(self, key: sa.Select[*tuple[Any, ...]] | sa.Table) -> Query:
        """Compiled once per key: a statement built at import, or a table for its INSERT."""
        query = self._queries.get(key)
        if query is None:
            statement = sa.insert(key) if isinstance(key, sa.Table) else key
            query = self._queries[key] = Query(statement, self.engine.dialect)
        return query


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
