"""The sandbox that checks generated code: what it checks, and what the code inside cannot do (reach the network,
read the worker's environment, outrun its CPU, wall time or memory limits)."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator

import pytest
from temporalio.testing import ActivityEnvironment

from activities.packaging import verification_report
from activities.sandbox import Sandbox, SandboxActivities, SandboxLimits, network_jail
from models.messages.prototypes import VerificationRequest, VerificationResult

FAST = SandboxLimits(cpu_seconds=2, memory_bytes=512 * 1024 * 1024, file_bytes=1024 * 1024, wall_seconds=20)


def answer(*files: tuple[str, str]) -> str:
    """A code answer as a model writes it: each file a fenced block naming its path."""
    blocks = [f"```{'python' if path.endswith('.py') else 'text'} {path}\n{text.strip()}\n```" for path, text in files]
    return "Here is the code.\n\n" + "\n\n".join(blocks)


def verify(*files: tuple[str, str], limits: SandboxLimits = FAST) -> VerificationResult:
    request = VerificationRequest(prototype_id=uuid.uuid4(), round=0, code_answers=[answer(*files)])
    return Sandbox(limits, jail=network_jail()).verify(request)


def check(result: VerificationResult, prefix: str) -> tuple[bool, str]:
    [found] = [c for c in result.checks if c.name.startswith(prefix)]
    return found.passed, found.output


def test_every_python_file_compiles_and_every_data_file_parses() -> None:
    result = verify(
        ("app/main.py", "def hello() -> str:\n    return 'hi'\n"),
        ("config.json", '{"debug": true}'),
        ("pyproject.toml", '[project]\nname = "app"\n'),
        ("compose.yaml", "services:\n  web:\n    image: python\n"),
    )
    assert result.passed
    assert {c.name for c in result.checks} == {
        "compile app/main.py",
        "parse config.json",
        "parse pyproject.toml",
        "parse compose.yaml",
    }


def test_a_syntax_error_and_broken_data_fail_with_the_parsers_words() -> None:
    result = verify(("app/main.py", "def broken(:\n    pass\n"), ("config.json", "{not json"), ("ok.py", "x = 1\n"))
    assert not result.passed
    assert check(result, "compile app/main.py")[0] is False
    assert "SyntaxError" in check(result, "compile app/main.py")[1]
    assert "JSONDecodeError" in check(result, "parse config.json")[1]
    assert check(result, "compile ok.py") == (True, "")
    assert "compile app/main.py:\nSyntaxError" in result.failures()


def test_an_answer_without_files_is_not_verified() -> None:
    result = Sandbox(FAST).verify(VerificationRequest(prototype_id=uuid.uuid4(), round=0, code_answers=["No code."]))
    assert not result.passed
    assert "No files could be read" in result.failures()


def test_generated_tests_run_with_pytest_and_a_later_answer_replaces_a_file() -> None:
    broken = answer(("calc.py", "def add(a, b):\n    return a - b\n"), ("tests/test_calc.py", TEST_CALC))
    fixed = answer(("calc.py", "def add(a, b):\n    return a + b\n"))
    sandbox = Sandbox(FAST, jail=network_jail())
    first = sandbox.verify(VerificationRequest(prototype_id=uuid.uuid4(), round=0, code_answers=[broken]))
    assert not first.passed
    assert "assert -1 == 3" in check(first, "pytest")[1]
    second = sandbox.verify(VerificationRequest(prototype_id=uuid.uuid4(), round=1, code_answers=[broken, fixed]))
    assert second.passed, second.failures()
    assert "1 passed" in check(second, "pytest")[1]


TEST_CALC = """
import sys, pathlib
sys.path.insert(0, str(pathlib.Path(__file__).parent.parent))
from calc import add

def test_add():
    assert add(1, 2) == 3
"""


@pytest.fixture
def listening_port() -> Iterator[int]:
    """A port on 127.0.0.1 that accepts connections from this process's network: the sandbox must not reach it."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen()
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


def test_the_sandbox_cannot_open_a_network_connection(listening_port: int) -> None:
    if network_jail() is None:
        pytest.skip("no network namespace can be made here (unshare -n / -rn); the sandbox says network_isolated=false")
    reach = f"""
import socket

def test_reach_the_worker_port():
    socket.create_connection(("127.0.0.1", {listening_port}), timeout=5).close()
"""
    with socket.create_connection(("127.0.0.1", listening_port), timeout=5):
        pass  # the port does accept connections from outside the sandbox
    result = verify(("test_network.py", reach))
    assert result.network_isolated
    passed, output = check(result, "pytest")
    assert not passed
    assert "Network is unreachable" in output or "ConnectionRefused" in output


def test_the_sandbox_cannot_read_the_workers_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATEX_TEST_SECRET_KEY", "sk-live-must-not-leak")
    assert os.environ["STATEX_TEST_SECRET_KEY"]
    probe = """
import os

def test_no_worker_variable_inside():
    assert "STATEX_TEST_SECRET_KEY" not in os.environ
    assert not any("sk-live-must-not-leak" in value for value in os.environ.values())
    own = {name for name in os.environ if not name.startswith("PYTEST_")}  # pytest's own, set inside
    assert own <= {"PATH", "HOME", "PYTHONDONTWRITEBYTECODE", "LANG"}, own
"""
    result = verify(("test_env.py", probe))
    assert check(result, "pytest")[0], result.failures()


def test_a_busy_loop_is_killed_at_the_cpu_limit() -> None:
    started = time.monotonic()
    result = verify(("test_spin.py", "def test_spin():\n    while True:\n        pass\n"))
    passed, output = check(result, "pytest")
    assert not passed
    assert "SIGXCPU" in output or "SIGKILL" in output
    assert time.monotonic() - started < FAST.wall_seconds


def test_a_busy_loop_is_killed_at_the_wall_limit_with_its_whole_process_group() -> None:
    limits = SandboxLimits(cpu_seconds=60, wall_seconds=2)
    started = time.monotonic()
    result = verify(("test_spin.py", "def test_spin():\n    while True:\n        pass\n"), limits=limits)
    passed, output = check(result, "pytest")
    assert not passed
    assert "killed at the wall time limit (2 s)" in output
    assert time.monotonic() - started < 15


def test_a_two_gigabyte_allocation_fails_at_the_memory_limit() -> None:
    result = verify(("test_hog.py", "def test_hog():\n    hog = bytearray(2 * 1024**3)\n    assert hog\n"))
    passed, output = check(result, "pytest")
    assert not passed
    assert "MemoryError" in output


async def test_the_activity_reports_the_verdict() -> None:
    request = VerificationRequest(prototype_id=uuid.uuid4(), round=2, code_answers=[answer(("a.py", "x = (\n"))])
    result = await ActivityEnvironment().run(SandboxActivities(FAST).verify_code, request)
    assert (result.round, result.passed, result.files) == (2, False, ["a.py"])


def test_a_flood_of_output_is_cut_at_the_file_size_limit_and_only_its_tail_is_kept() -> None:
    flood = "import sys\n\ndef test_flood():\n    while True:\n        sys.stdout.write('x' * 65536)\n"
    result = verify(("test_flood.py", flood))
    passed, output = check(result, "pytest")
    assert not passed
    assert len(output) < 5_000


def test_without_a_network_namespace_the_verdict_says_the_network_was_not_isolated() -> None:
    result = Sandbox(FAST, jail=None).verify(
        VerificationRequest(prototype_id=uuid.uuid4(), round=0, code_answers=[answer(("a.py", "x = 1\n"))])
    )
    assert result.passed and not result.network_isolated
    assert "**the network was not isolated**" in verification_report(result, fix_rounds=0)
