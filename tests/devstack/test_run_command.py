"""`statex run`, end to end: the dev stack starts, a contact message becomes two emails, a STRIPE checkout is
paid at the local Stripe emulator with `statex pay`, Ctrl-C stops it all.

The command runs as a real subprocess in a process group of its own, as it would in a terminal, on ports
picked here so that it cannot meet another test's servers. Also: docker-compose.yml's Temporal registers
the same search attributes.
"""

from __future__ import annotations

import email
import email.policy
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import suppress
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest
from payload_keys import PAYLOAD_KEYS

import cli
from api.server import api_command
from devstack.supervisor import temporal_command
from models import search_attributes
from settings import Settings

REPO = Path(__file__).resolve().parents[2]
START_SECONDS = 90.0
EMAIL_SECONDS = 60.0
PAYMENT_SECONDS = 60.0
STOP_SECONDS = 30.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def accepts_connections(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def wait_for(condition: Callable[[], bool], seconds: float, what: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert process.poll() is None, f"`statex run` exited with code {process.returncode} while waiting for {what}"
        assert time.monotonic() < deadline, f"no {what} within {seconds:.0f} s"
        time.sleep(0.25)


def is_ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture
def run_env(tmp_path: Path) -> dict[str, str]:
    inherited = {key: value for key, value in os.environ.items() if not key.startswith("STRIPE_")}  # the default
    env = {key: value for key, value in inherited.items() if key not in {"DATABASE_URL", "REDIS_URL", "SENTRY_DSN"}}
    env.update(
        DATA_DIR=str(tmp_path / "data"),
        API_HOST="127.0.0.1",
        API_PORT=str(free_port()),
        TEMPORAL_ADDRESS=f"127.0.0.1:{free_port()}",
        TEMPORAL_UI_PORT=str(free_port()),
        TEMPORAL_HTTP_PORT=str(free_port()),
        TEMPORAL_METRICS_PORT=str(free_port()),
        LOCAL_STRIPE_PORT=str(free_port()),
        WORKER_METRICS_PORT=str(free_port()),  # two stacks (or another test's worker) must not share one
        WORKER_SDK_METRICS_PORT=str(free_port()),
        ENVIRONMENT="development",
        EMAIL_BACKEND="outbox",
        RATE_LIMIT_ENABLED="false",
        API_WORKERS="2",  # the production server configuration: several uvicorn processes under a supervisor
        PYTHONPATH=os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH")))),
        PYTHONUNBUFFERED="1",
    )
    return env


def of_this_stack(pid: int, data_dir: str) -> bool:
    """Whether the process `pid` is still one this stack started. A logged pid may be long dead (the worker the
    test killed) and its number given to anybody since (pid_max can be 32768): killing its group blindly once
    took another test's Temporal server down."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    return f"DATA_DIR={data_dir}".encode() in environ


@pytest.fixture
def statex_run(tmp_path: Path, run_env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """`statex run`, working in tmp_path so a developer's `.env` cannot change what it starts.

    Whatever happens, nothing outlives the test: the children have process groups of their own (that is
    the point of the design), so after a failure they are killed by the pids `run` logs for them.
    """
    output = tmp_path / "run.log"
    with output.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli", "run"],
            cwd=tmp_path,
            env=run_env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            process_group=0,
        )
    try:
        yield process
    finally:
        if process.poll() != 0:  # not stopped cleanly: kill `run` first, so that it starts nothing more
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            for pid in re.findall(rb"started .+ \(pid (\d+)\)", output.read_bytes()):
                if of_this_stack(int(pid), run_env["DATA_DIR"]):
                    with suppress(ProcessLookupError):
                        os.killpg(int(pid), signal.SIGKILL)
        print(f"--- output of `statex run` (exit code {process.returncode}) ---")
        print(output.read_text(errors="replace"))


def statex_pay(run_env: dict[str, str], cwd: Path, payment_id: str, *options: str) -> str:
    """`statex pay` as a user types it in a second terminal: the same settings, its own process."""
    paid = subprocess.run(
        [sys.executable, "-m", "cli", "pay", payment_id, *options],
        cwd=cwd,
        env=run_env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert paid.returncode == 0, paid.stdout + paid.stderr
    return paid.stdout


def stripe_checkout(api: str, token: str, tier: str) -> dict[str, Any]:
    """A checkout as a frontend makes one: 202 means the payment is saved but no worker took its checkout within
    the API's wait (a worker just started is still importing its workflows), and the same request with the same
    Idempotency-Key asks again for the gateway's next step."""
    key = uuid.uuid4().hex
    deadline = time.monotonic() + PAYMENT_SECONDS
    while True:
        response = httpx.post(
            f"{api}/api/payments/checkout",
            json={"tier": tier, "gateway": "STRIPE"},
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key},
            timeout=30,
        )
        if response.status_code != 202 or time.monotonic() > deadline:
            break
    assert response.status_code == 201, response.text
    payment: dict[str, Any] = response.json()["payment"]
    assert payment["next_action"]["client_secret"].startswith(payment["gateway_id"])
    return payment


@pytest.mark.slow
def test_run_serves_takes_payments_restarts_a_killed_worker_and_stops_on_ctrl_c(
    statex_run: subprocess.Popen[bytes], run_env: dict[str, str], tmp_path: Path
) -> None:
    """One stack, as a developer uses it in a day: it serves and emails, a killed worker is started again while
    the API keeps answering, the new worker takes Stripe payments at the local emulator, and Ctrl-C stops
    everything, every port released. (One stack rather than one per step: each start costs several seconds of
    CPU on a 2-core machine.)"""
    api = f"http://127.0.0.1:{run_env['API_PORT']}"
    temporal_port = int(run_env["TEMPORAL_ADDRESS"].rpartition(":")[2])
    log = tmp_path / "run.log"
    outbox = Path(run_env["DATA_DIR"]) / "outbox"
    wait_for(lambda: is_ready(f"{api}/ready"), START_SECONDS, "200 from /ready", statex_run)

    # It serves the API and sends emails through the outbox.
    response = httpx.post(
        f"{api}/api/contact",
        json={"name": "Ada", "email": "ada@example.com", "message": "Hello from the smoke test"},
        timeout=10,
    )
    assert response.status_code == 202, response.text
    assert "server" not in response.headers  # uvicorn started with --no-server-header
    assert response.headers["x-content-type-options"] == "nosniff"
    wait_for(lambda: len(list(outbox.glob("*.eml"))) >= 2, EMAIL_SECONDS, "two emails in the outbox", statex_run)
    messages = [email.message_from_bytes(eml.read_bytes(), policy=email.policy.default) for eml in outbox.glob("*.eml")]
    assert len(messages) == 2  # one to the team, one confirmation to the sender
    (confirmation,) = [message for message in messages if message["To"] == "ada@example.com"]
    (to_team,) = [message for message in messages if message["To"] != "ada@example.com"]
    assert "Hello from the smoke test" in to_team.get_content()
    assert "Hello from the smoke test" not in confirmation.get_content()  # a fixed text: the form relays nothing

    # A killed worker is started again while the API keeps answering.
    [worker] = started_pids(log, "the worker")
    os.kill(worker, signal.SIGKILL)
    outage: list[int | None] = []  # /health during the outage: the API must answer every poll

    def restarted() -> bool:
        outage.append(answers(f"{api}/health"))
        return len(started_pids(log, "the worker")) == 2

    wait_for(restarted, START_SECONDS, "the worker started again", statex_run)
    assert outage and set(outage) == {200}, outage
    assert b"the worker was killed by signal 9 (Killed) unexpectedly; starting it again in" in log.read_bytes()
    wait_for(lambda: is_ready(f"{api}/ready"), START_SECONDS, "200 from /ready after the restart", statex_run)

    # The new worker does the work: Stripe checkouts paid and declined at the local emulator with `statex pay`.
    stripe = httpx.get(f"{api}/api/capabilities", timeout=10).json()["payments"]["STRIPE"]
    assert stripe["available"] is True and stripe["emulated"] is True
    credentials = {"email": f"payer-{uuid.uuid4().hex[:8]}@example.com", "password": "correct horse battery"}
    assert httpx.post(f"{api}/auth/register", json={**credentials, "name": "Ada"}, timeout=30).status_code == 202
    token = httpx.post(f"{api}/auth/login", json=credentials, timeout=30).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}

    def status_of(payment_id: str) -> str:
        return str(httpx.get(f"{api}/api/payments/{payment_id}", headers=auth, timeout=10).json()["status"])

    paid = stripe_checkout(api, token, "PREMIUM")
    assert "paid" in statex_pay(run_env, tmp_path, paid["id"])
    wait_for(lambda: status_of(paid["id"]) == "COMPLETED", PAYMENT_SECONDS, "COMPLETED payment", statex_run)
    assert httpx.get(f"{api}/auth/me", headers=auth, timeout=10).json()["tier"] == "PREMIUM"
    receipt = f"payment-{paid['id']}-receipt.eml"
    wait_for(lambda: (outbox / receipt).exists(), EMAIL_SECONDS, "the receipt in the outbox", statex_run)
    assert [eml.name for eml in outbox.glob(f"payment-{paid['id']}-*.eml")] == [receipt]
    declined = stripe_checkout(api, token, "STANDARD")
    assert "declined" in statex_pay(run_env, tmp_path, declined["id"], "--card", "declined")
    wait_for(lambda: status_of(declined["id"]) == "FAILED", PAYMENT_SECONDS, "FAILED payment", statex_run)
    assert httpx.get(f"{api}/auth/me", headers=auth, timeout=10).json()["tier"] == "PREMIUM"

    # Ctrl-C, what a terminal does to the whole foreground group: everything stops, every port is released.
    os.killpg(statex_run.pid, signal.SIGINT)
    assert statex_run.wait(timeout=STOP_SECONDS) == 0
    for pid in started_pids(log, "the worker"):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    for port in ("API_PORT", "LOCAL_STRIPE_PORT", "WORKER_METRICS_PORT"):
        assert not accepts_connections(int(run_env[port])), port
    assert not accepts_connections(temporal_port)


def test_run_registers_every_search_attribute_of_the_code() -> None:
    """docker-compose.yml creates the same ones (tests/deploy/test_compose_file.py)."""
    command = temporal_command(Settings(temporal_address="127.0.0.1:7233"))
    from_run = {value for flag, value in pairwise(command) if flag == "--search-attribute"}
    assert from_run == {f"{key.name}={search_attributes.cli_type(key)}" for key in search_attributes.ALL}


def test_production_serves_one_process_per_core_without_an_access_log(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    production = api_command(Settings(environment="production", jwt_secret="x" * 40, payload_keys=PAYLOAD_KEYS))
    development = api_command(Settings(environment="development"))
    assert _flag(production, "--workers") == "4" and "--no-access-log" in production
    assert _flag(development, "--workers") == "1"
    assert "--no-access-log" in development  # everywhere: the request log, with ids and no tokens, replaces it
    assert _flag(production, "--loop") == "auto" and _flag(production, "--http") == "auto"  # uvloop, httptools
    assert (
        _flag(
            api_command(
                Settings(environment="production", jwt_secret="x" * 40, payload_keys=PAYLOAD_KEYS, api_workers=3)
            ),
            "--workers",
        )
        == "3"
    )


def test_the_image_and_compose_serve_the_api_the_way_statex_api_does() -> None:
    """No second copy of the server flags to drift: both run `python -m cli api`, which execs api_command."""
    assert 'CMD ["python", "-m", "cli", "api"]' in (REPO / "Dockerfile").read_text()
    assert 'command: ["python", "-m", "cli", "api"]' in (REPO / "docker-compose.yml").read_text()


def test_statex_api_migrates_once_then_tells_its_processes_not_to(monkeypatch: pytest.MonkeyPatch) -> None:
    """One migration before the server starts, and none in each process: a process that migrates keeps Alembic
    in memory for its whole life."""
    migrated: list[Settings] = []
    served: list[tuple[list[str], dict[str, str]]] = []

    async def migrate(settings: Settings) -> None:
        migrated.append(settings)

    monkeypatch.setattr(cli, "migrate_database", migrate)
    monkeypatch.setattr(os, "execve", lambda path, args, env: served.append((args, env)))
    settings = Settings(environment="development")
    cli.run_api(settings)
    [(command, env)] = served
    assert migrated == [settings]
    assert command == api_command(settings) and env["RUN_MIGRATIONS_ON_START"] == "false"

    cli.run_api(settings.model_copy(update={"run_migrations_on_start": False}))
    assert migrated == [settings]  # told not to: it does not


def _flag(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_run_points_the_temporal_ui_at_the_api_codec_server() -> None:
    """The dev server's UI decodes the encrypted payloads through the API it runs next to, on whatever port."""
    command = temporal_command(Settings(public_api_url="http://127.0.0.1:8000/"))  # type: ignore[call-arg]
    assert dict(pairwise(command))["--ui-codec-endpoint"] == "http://127.0.0.1:8000/codec"
    moved = temporal_command(Settings(_env_file=None, api_port=18123))  # type: ignore[call-arg]
    assert dict(pairwise(moved))["--ui-codec-endpoint"] == "http://127.0.0.1:18123/codec"


def test_every_port_of_the_temporal_dev_server_has_a_setting() -> None:
    """Left out, --http-port and --metrics-port are random: nothing could scrape them or tell two stacks apart."""
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        temporal_address="127.0.0.1:17233",
        temporal_ui_port=17234,
        temporal_http_port=17235,
        temporal_metrics_port=17236,
    )
    flags = dict(pairwise(temporal_command(settings)))
    assert (flags["--port"], flags["--ui-port"], flags["--http-port"], flags["--metrics-port"]) == (
        "17233",
        "17234",
        "17235",
        "17236",
    )


def started_pids(log: Path, name: str) -> list[int]:
    """The pids `statex run` logged for one child, first start first."""
    return [int(pid) for pid in re.findall(rf"started {name}(?: again)? \(pid (\d+)\)".encode(), log.read_bytes())]


def answers(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=5).status_code
    except httpx.TransportError:
        return None
