"""`statex api` given SIGTERM, as an orchestrator stops it in a rolling deploy: it refuses new connections at
once, lets the request in flight (a long poll) finish with its answer, and exits 0."""

from __future__ import annotations

import asyncio
import signal
import socket
from pathlib import Path

import httpx
from helpers import eventually, register_and_login
from processes import exit_code_within, free_port, service_process, settings_env
from temporalio.testing import WorkflowEnvironment

from settings import Settings

START_SECONDS = 90.0
LONG_POLL_SECONDS = 15  # long enough to still be waiting when the refusal is seen on a busy machine
IDEA = {"idea": "An app that books climbing gyms: members see free slots and reserve one."}


def refuses_connections(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) != 0


async def test_the_api_drains_a_request_in_flight_on_sigterm_refuses_new_ones_and_exits_0(
    temporal_env: WorkflowEnvironment, settings: Settings, tmp_path: Path
) -> None:
    port = free_port()
    served = settings.model_copy(
        update={
            "api_host": "127.0.0.1",
            "api_port": port,
            "api_workers": 1,
            "api_shutdown_grace_seconds": 30,
            "temporal_rpc_timeout_seconds": 2.0,  # the status query no worker answers gives up soon
        }
    )
    env = settings_env(served, temporal_env.client.service_client.config.target_host)
    with service_process(["-m", "cli", "api"], env, tmp_path / "api.log") as api_process:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:

            async def healthy() -> bool:
                try:
                    return (await http.get("/health")).status_code == 200
                except httpx.TransportError:
                    return False

            async def long_poll_waiting() -> bool:
                metrics = (await http.get("/metrics")).text
                return 'statex_waits_in_progress{wait="prototype"} 1.0' in metrics

            await eventually(healthy, within=START_SECONDS, what="the API to answer")
            account = await register_and_login(http)
            headers = {"Authorization": f"Bearer {account['access_token']}"}
            accepted = await http.post("/api/ai/prototype", json=IDEA, headers=headers)  # no worker: it waits
            assert accepted.status_code == 202, accepted.text
            status_url = accepted.json()["status_url"]
            in_flight = asyncio.create_task(http.get(status_url, params={"wait": LONG_POLL_SECONDS}, headers=headers))
            await eventually(long_poll_waiting, within=30, what="the long poll to be waiting")
            api_process.send_signal(signal.SIGTERM)
            await eventually(
                lambda: asyncio.to_thread(refuses_connections, port), within=10, what="new connections refused"
            )
            assert not in_flight.done()  # refused while the long poll still waits
            answered = await in_flight
        code = await asyncio.to_thread(exit_code_within, api_process, served.api_shutdown_grace_seconds + 15)
    assert answered.status_code == 200, answered.text
    assert answered.json()["status"] == "QUEUED"
    assert code == 0
