"""The database engine, sessions and migrations (Alembic, applied on start)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
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


class Database:
    """Short units of work: `async with database.session() as db:` query, commit, and the connection goes
    back to the pool at the end of the block. Never keep one open across an await on the network."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sessions = session_factory(engine)
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")  # the same pool

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
        if its key is taken. The object stays a plain value: it never joins a session."""
        mapper = sa.inspect(type(row))
        values = {prop.columns[0].key: getattr(row, prop.key) for prop in mapper.column_attrs}
        await self.write(sa.insert(mapper.local_table), values)


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
