"""The service's own processes (`python -m worker`, `python -m cli api`) started for a test with a test's
Settings, and stopped the way an orchestrator stops them: SIGTERM, or SIGKILL for a crash."""

from __future__ import annotations

import enum
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from settings import Settings

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def settings_env(settings: Settings, temporal_address: str) -> dict[str, str]:
    """The environment that gives a process these settings: every field the test set, as the variable pydantic-
    settings reads (lists comma-separated, as the CommaList fields take them), its own metrics ports."""
    env = {key: value for key, value in os.environ.items() if key not in {"DATABASE_URL", "REDIS_URL", "SENTRY_DSN"}}
    for name in settings.model_fields_set:
        if (value := getattr(settings, name)) is not None:
            env[name.upper()] = _as_variable(value)
    env.update(
        TEMPORAL_ADDRESS=temporal_address,
        WORKER_METRICS_PORT=str(free_port()),
        WORKER_SDK_METRICS_PORT=str(free_port()),
        PYTHONPATH=os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH")))),
        PYTHONUNBUFFERED="1",
    )
    return env


def _as_variable(value: Any) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, list | tuple | set):
        return ",".join(_as_variable(item) for item in value)
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@contextmanager
def service_process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`python <args>` in a process group of its own, its output in `log` (printed after the test); killed at
    the end if the test has not stopped it."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, *args],
            cwd=log.parent,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            process_group=0,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        print(f"--- output of {' '.join(args)} (exit code {process.returncode}) ---")
        print(log.read_text(errors="replace"))


def exit_code_within(process: subprocess.Popen[bytes], seconds: float) -> int:
    """The process's exit code once it has exited, failing the test if it has not within `seconds`."""
    deadline = time.monotonic() + seconds
    while (code := process.poll()) is None:
        assert time.monotonic() < deadline, f"still running {seconds:.0f} s later"
        time.sleep(0.1)
    return code
