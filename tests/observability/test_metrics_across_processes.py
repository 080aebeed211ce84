"""`statex api` with several uvicorn processes and PROMETHEUS_MULTIPROC_DIR: every scrape, whichever process
answers it, adds up the requests all of them served; the folder starts empty and a stopped process leaves no
live gauge behind. One test, as starting the API's processes is most of its time."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, multiprocess
from prometheus_client.parser import text_string_to_metric_families
from servers import free_port, tail
from temporalio.testing import WorkflowEnvironment

ROOT = Path(__file__).resolve().parents[2]
DEADLINE_SECONDS = 120.0
BATCH = 24
"""Requests sent at once, each on a connection of its own, so that both processes take some."""


def health_requests(families: Iterator[object]) -> float:
    """statex_http_requests_total summed over the samples of GET /health."""
    total = 0.0
    for family in families:
        for sample in getattr(family, "samples", []):
            if sample.name == "statex_http_requests_total" and sample.labels.get("route") == "/health":
                total += sample.value
    return total


def counted_by_each_process(folder: Path, scratch: Path) -> dict[str, float]:
    """The GET /health requests each process has counted so far, read from its own counter file alone."""
    counts = {}
    for file in folder.glob("counter_*.db"):
        alone = scratch / file.stem
        alone.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, alone / file.name)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(alone))
        counts[file.stem.removeprefix("counter_")] = health_requests(iter(registry.collect()))
    return counts


def get(url: str) -> httpx.Response:
    return httpx.get(url, timeout=10, headers={"Connection": "close"})  # a new connection each: any process


@dataclass
class ApiProcesses:
    base: str
    folder: Path
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        """As a container stops it: SIGTERM to the supervisor, which stops its processes gracefully."""
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(timeout=60) == 0, tail(self.log)


@pytest.fixture
def api_processes(tmp_path: Path, temporal_env: WorkflowEnvironment) -> Iterator[ApiProcesses]:
    folder = tmp_path / "metrics"
    folder.mkdir()
    (folder / "counter_4242.db").write_bytes(b"left by an earlier run")  # must be gone, not added up
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key not in {"DATABASE_URL", "REDIS_URL", "SENTRY_DSN"}}
    env.update(
        ENVIRONMENT="development",  # /metrics open without a token
        DATA_DIR=str(tmp_path / "data"),
        API_HOST="127.0.0.1",
        API_PORT=str(port),
        API_WORKERS="2",
        PROMETHEUS_MULTIPROC_DIR=str(folder),
        TEMPORAL_ADDRESS=temporal_env.client.service_client.config.target_host,
        RATE_LIMIT_ENABLED="false",
        PYTHONPATH=str(ROOT),
    )
    log = tmp_path / "api.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli", "api"], cwd=tmp_path, env=env, stdout=output, stderr=subprocess.STDOUT,
            process_group=0,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + DEADLINE_SECONDS
        while True:
            assert process.poll() is None, f"`statex api` exited ({process.returncode}):\n{tail(log)}"
            with suppress(httpx.TransportError):
                if get(f"{base}/health").status_code == 200:
                    break
            assert time.monotonic() < deadline, f"the API did not answer within {DEADLINE_SECONDS:.0f} s:\n{tail(log)}"
            time.sleep(0.1)
        api = ApiProcesses(base, folder, process, log)
        yield api
        if process.poll() is None:
            api.stop()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.mark.slow
def test_every_scrape_adds_up_the_requests_of_every_api_process(api_processes: ApiProcesses, tmp_path: Path) -> None:
    base, folder = api_processes.base, api_processes.folder
    assert not (folder / "counter_4242.db").exists(), "the folder was not emptied before the processes started"

    sent = 1  # the probe that saw the API up
    deadline = time.monotonic() + DEADLINE_SECONDS
    with ThreadPoolExecutor(max_workers=BATCH) as pool:
        while True:  # until both processes have served some: which one accepts a connection is the kernel's choice
            answers = list(pool.map(lambda _: get(f"{base}/health").status_code, range(BATCH)))
            assert answers == [200] * BATCH
            sent += BATCH
            per_process = counted_by_each_process(folder, tmp_path / "scratch")
            if sum(1 for count in per_process.values() if count > 0) >= 2:
                break
            assert time.monotonic() < deadline, f"one process served all {sent} requests: {per_process}"

    scrapes: list[float] = []
    while len(scrapes) < 6:  # several scrapes, on new connections: each process answers some of them
        scraped = health_requests(text_string_to_metric_families(get(f"{base}/metrics").text))
        if scraped != sent:  # a count is added once its answer has gone: the last few may be a moment late
            assert time.monotonic() < deadline, f"/metrics says {scraped} GET /health, {sent} were sent"
            time.sleep(0.1)
            continue
        scrapes.append(scraped)
    assert scrapes == [sent] * 6

    # Requests in flight are a live gauge: a process that stopped must not go on being added to it.
    assert len(list(folder.glob("gauge_livesum_*.db"))) == 2
    api_processes.stop()
    assert list(api_processes.folder.glob("gauge_livesum_*.db")) == []
    assert len(list(api_processes.folder.glob("counter_*.db"))) == 2  # what they counted stays
