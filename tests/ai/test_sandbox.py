"""The sandbox that checks generated code (a bubblewrap jail): what it checks, and what the code inside cannot do
(reach the network or the worker's files, read the worker's environment, outlive the check, outrun its CPU, wall
time or memory limits); that it works wherever the project is installed (an interpreter under a 0700 folder);
and that where no jail can be made, nothing runs and the verdict says the sandbox is unavailable.
These tests need bubblewrap (`apt-get install bubblewrap`): without it they fail, saying so, rather than skip."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import importlib.metadata
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import eventually
from temporalio.testing import ActivityEnvironment

from activities.packaging import verification_report
from activities.sandbox import Sandbox, SandboxActivities, SandboxLimits
from models.messages.prototypes import VerificationRequest, VerificationResult

FAST = SandboxLimits(cpu_seconds=2, memory_bytes=512 * 1024 * 1024, file_bytes=1024 * 1024, wall_seconds=20)
ROOT = Path(__file__).resolve().parents[2]


@functools.cache
def sandbox(limits: SandboxLimits = FAST) -> Sandbox:
    """The real sandbox under `limits`, probed once under FAST's (a probe starts a jail, under the sandbox's
    limits: a test's 2 s wall limit is too short for the probe's interpreter start on a busy machine)."""
    if limits != FAST:
        made = copy.copy(sandbox(FAST))
        made.limits = limits
        return made
    made = Sandbox(limits)
    assert made.available, f"the sandbox cannot run here: {made.availability.reason}"
    return made


def answer(*files: tuple[str, str]) -> str:
    """A code answer as a model writes it: each file a fenced block naming its path."""
    blocks = [f"```{'python' if path.endswith('.py') else 'text'} {path}\n{text.strip()}\n```" for path, text in files]
    return "Here is the code.\n\n" + "\n\n".join(blocks)


def request(*files: tuple[str, str]) -> VerificationRequest:
    return VerificationRequest(prototype_id=uuid.uuid4(), round=0, code_answers=[answer(*files)])


def verify(*files: tuple[str, str], limits: SandboxLimits = FAST) -> VerificationResult:
    return sandbox(limits).verify(request(*files))


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
    assert result.network_isolated and result.sandbox_available
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
    result = sandbox().verify(VerificationRequest(prototype_id=uuid.uuid4(), round=0, code_answers=["No code."]))
    assert not result.passed
    assert "No files could be read" in result.failures()


def test_generated_tests_run_with_pytest_and_a_later_answer_replaces_a_file() -> None:
    broken = answer(("calc.py", "def add(a, b):\n    return a - b\n"), ("tests/test_calc.py", TEST_CALC))
    fixed = answer(("calc.py", "def add(a, b):\n    return a + b\n"))
    first = sandbox().verify(VerificationRequest(prototype_id=uuid.uuid4(), round=0, code_answers=[broken]))
    assert not first.passed
    assert "assert -1 == 3" in check(first, "pytest")[1]
    second = sandbox().verify(VerificationRequest(prototype_id=uuid.uuid4(), round=1, code_answers=[broken, fixed]))
    assert second.passed, second.failures()
    assert "1 passed" in check(second, "pytest")[1]


TEST_CALC = """
import sys, pathlib
sys.path.insert(0, str(pathlib.Path(__file__).parent.parent))
from calc import add

def test_add(tmp_path):
    (tmp_path / "scratch").write_text("pytest's own fixtures work in the jail")
    assert add(1, 2) == 3
"""


# Where the project is installed: a fresh clone in a 0700 folder (mktemp -d, a 0700 home).


@pytest.fixture(scope="module")
def python_in_a_private_folder() -> Iterator[Path]:
    """A virtualenv under a 0700 folder of this user, with the sandbox's tools (pytest, PyYAML and what they
    need, copied from this one), on this interpreter's base: the layout of a fresh clone in `mktemp -d`.
    nobody cannot even walk into it (the sandbox used to run the interpreter as nobody, and failed here)."""
    private = Path(tempfile.mkdtemp(prefix="private-"))
    assert private.stat().st_mode & 0o777 == 0o700
    venv = private / "clone" / ".venv"
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)  # type: ignore[attr-defined]
    [site] = venv.glob("lib/python*/site-packages")
    for name in _closure(["pytest", "pyyaml"]):
        distribution = importlib.metadata.distribution(name)
        for file in distribution.files or []:
            source = Path(str(distribution.locate_file(file)))
            if str(file).startswith("..") or not source.is_file():
                continue  # scripts in bin/: not needed
            target = site / file
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    try:
        yield venv / "bin" / "python"
    finally:
        shutil.rmtree(private)


def _closure(names: list[str]) -> set[str]:
    """The distributions `names` need, as installed here (a requirement not installed is one this interpreter
    does not need: colorama on Linux, tomli on 3.11); extras left out."""
    found: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in found:
            continue
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        found.add(name)
        for requirement in requires:
            if "extra ==" not in requirement:
                todo.append(_name(requirement))
    return found


def test_the_checks_run_when_the_interpreter_lives_under_a_folder_only_its_owner_may_enter(
    python_in_a_private_folder: Path,
) -> None:
    private = python_in_a_private_folder.parents[3]
    if os.geteuid() == 0:  # the old way, run as nobody, reproduced: not in the virtualenv, nor its tools there
        drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        in_venv = f"import sys; sys.exit(0 if sys.prefix == {str(python_in_a_private_folder.parents[1])!r} else 3)"
        old = subprocess.run([*drop, str(python_in_a_private_folder), "-c", in_venv], capture_output=True)
        assert old.returncode != 0, old
    made = Sandbox(FAST, python=str(python_in_a_private_folder))
    assert made.available, made.availability.reason
    which = f"""
import sys, yaml

def test_which_interpreter():
    print("PREFIX", sys.prefix)
    assert sys.prefix.startswith({str(private)!r})
    assert yaml.safe_load("a: 1") == {{"a": 1}}
"""
    result = made.verify(request(("test_which.py", which), ("config.yaml", "a: 1\n")))
    assert result.passed, result.failures()
    assert "1 passed" in check(result, "pytest")[1]


def test_the_workers_runtime_install_has_the_sandboxs_tools() -> None:
    """pytest and PyYAML are runtime dependencies (the lock's, not the dev group's), so `make run` and the image
    install them; and the sandbox's interpreter imports them inside the jail (its probe does)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {_name(requirement) for requirement in project["dependencies"]}
    assert {"pytest", "pyyaml"} <= runtime
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    [own] = [package for package in lock["package"] if package["name"] == project["name"]]
    assert {"pytest", "pyyaml"} <= {dependency["name"] for dependency in own["dependencies"]}
    made = sandbox()
    assert made.available and made.interpreter.executable == os.path.abspath(sys.executable)


def _name(requirement: str) -> str:
    for stop in "[<>=!~; ":
        requirement = requirement.split(stop)[0]
    return requirement.lower().replace("_", "-")


# Fail closed: no jail, nothing runs.

RAN_MARKER = """
import pathlib

def test_leave_a_mark():
    try:
        pathlib.Path({mark!r}).write_text("ran")  # only code run outside the jail could
    except OSError:
        pass
    raise AssertionError("RAN-{token}")  # in the check's output: the code ran
"""


@pytest.fixture
def open_folder() -> Iterator[Path]:
    """A folder anyone may write to: code run without the jail (as nobody or as the worker) could write here."""
    folder = Path(tempfile.mkdtemp(prefix="open-"))
    folder.chmod(0o777)
    try:
        yield folder
    finally:
        shutil.rmtree(folder)


@pytest.fixture
def fake_bwrap(tmp_path: Path) -> str:
    """A bwrap that cannot make namespaces, as in a container whose seccomp profile forbids them."""
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    return str(fake)


@pytest.mark.parametrize("how", ["missing binary", "not on PATH", "no namespaces"])
def test_without_a_working_bwrap_nothing_runs_and_the_verdict_says_sandbox_unavailable(
    how: str, open_folder: Path, fake_bwrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = uuid.uuid4().hex
    mark = open_folder / "mark"
    code = ("test_mark.py", RAN_MARKER.format(mark=str(mark), token=token))
    # Positive control: with the jail the code does run (its output says so), though its mark stays inside.
    ran = verify(code)
    assert f"RAN-{token}" in check(ran, "pytest")[1]
    assert not mark.exists()

    if how == "missing binary":
        made = Sandbox(FAST, bwrap="/nonexistent/bwrap")
    elif how == "not on PATH":
        monkeypatch.setenv("PATH", str(open_folder))
        made = Sandbox(FAST)
    else:
        made = Sandbox(FAST, bwrap=fake_bwrap)
    assert not made.available
    reason = made.availability.reason or ""
    assert ("bubblewrap not found" if how != "no namespaces" else "No permissions to create new namespace") in reason
    result = made.verify(request(code))
    assert (result.passed, result.sandbox_available, result.files) == (False, False, ["test_mark.py"])
    assert result.checks == []
    assert not mark.exists()
    assert result.sandbox_error is not None and "sandbox unavailable" in result.sandbox_error
    report = verification_report(result, fix_rounds=0)
    assert "**NOT verified: sandbox unavailable.**" in report and "The code was NOT run" in report


def test_the_activity_says_why_at_startup_when_the_sandbox_is_unavailable(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="activities.sandbox"):
        SandboxActivities(FAST, bwrap="/nonexistent/bwrap")
    assert "sandbox unavailable: bubblewrap not found" in caplog.text


# Hostile code.


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
    reach = f"""
import socket, pytest

@pytest.mark.parametrize("port", [{listening_port}, 5432, 6379])
def test_reach_the_workers_ports(port):
    socket.create_connection(("127.0.0.1", port), timeout=5).close()
"""
    with socket.create_connection(("127.0.0.1", listening_port), timeout=5):
        pass  # the port does accept connections from outside the sandbox
    result = verify(("test_network.py", reach))
    assert result.network_isolated
    passed, output = check(result, "pytest")
    assert not passed
    assert "3 failed" in output and "ConnectionRefused" in output


def test_the_sandbox_cannot_read_the_workers_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATEX_TEST_SECRET_KEY", "sk-live-must-not-leak")
    assert os.environ["STATEX_TEST_SECRET_KEY"]
    probe = f"""
import os, pathlib

def test_no_worker_variable_inside():
    assert "STATEX_TEST_SECRET_KEY" not in os.environ
    assert not any("sk-live-must-not-leak" in value for value in os.environ.values())
    own = {{name for name in os.environ if not name.startswith("PYTEST_")}}  # pytest's own, set inside
    assert own <= {{"PATH", "HOME", "PYTHONDONTWRITEBYTECODE", "LANG", "PWD"}}, own  # PWD: bwrap's --chdir

def test_no_secret_in_any_process_environment():
    seen = 0
    for environ in pathlib.Path("/proc").glob("[0-9]*/environ"):
        try:
            text = environ.read_bytes()
        except OSError:
            continue
        seen += 1
        assert b"sk-live-must-not-leak" not in text, environ
    assert seen  # /proc/1/environ (the jail's init) at least
    assert not pathlib.Path("/proc/{os.getpid()}/environ").exists()  # the worker is not in this PID namespace
"""
    result = verify(("test_env.py", probe))
    assert check(result, "pytest")[0], result.failures()


def test_nothing_outside_the_run_folder_can_be_written(open_folder: Path) -> None:
    target = open_folder / "written"
    checkout = ROOT / "written"
    probe = f"""
import errno, pathlib, pytest, sys

@pytest.mark.parametrize("path", [{str(target)!r}, "/written", "/usr/lib/written", sys.prefix + "/written",
                                  "/etc/written", "/proc/written", "/dev/written", "/dev/shm/" + "x" * 4096])
def test_write_outside(path):
    with pytest.raises(OSError):
        pathlib.Path(path).write_text("x")

def test_write_into_the_checkout():
    try:  # under /tmp (a clone in mktemp -d) the path exists in the jail's own /tmp, never on the host
        pathlib.Path({str(checkout)!r}).write_text("x")
    except OSError:
        pass

def test_write_inside(tmp_path):
    pathlib.Path("mine").write_text("the run's folder is writable")
    (tmp_path / "mine").write_text("and the private /tmp")
    pathlib.Path("/dev/null").write_text("devices work")
    pathlib.Path("/dev/shm/mine").write_text("and /dev/shm")
    with pytest.raises(OSError) as full:  # size-capped (16 MB), however many files below the file size limit
        for number in range(20):
            pathlib.Path(f"/dev/shm/{{number}}").write_bytes(b"x" * 1_000_000)
    assert full.value.errno == errno.ENOSPC
"""
    result = verify(("test_write.py", probe))
    assert check(result, "pytest")[0], result.failures()
    assert not target.exists() and not checkout.exists()


def test_no_privilege_and_no_new_namespace_inside() -> None:
    probe = """
import ctypes, os, pathlib

def test_nobody_without_capabilities():
    assert (os.getuid(), os.getgid(), os.getgroups()) == (65534, 65534, [])
    status = pathlib.Path("/proc/self/status").read_text()
    assert "CapEff:\t0000000000000000" in status and "CapBnd:\t0000000000000000" in status
    assert not pathlib.Path("/etc/passwd").exists() and not pathlib.Path("/run").exists()

def test_no_user_namespace_of_its_own():
    assert ctypes.CDLL(None, use_errno=True).unshare(0x10000000) == -1  # CLONE_NEWUSER
"""
    result = verify(("test_privilege.py", probe))
    assert check(result, "pytest")[0], result.failures()


def _processes_with(marker: str) -> list[int]:
    """This host's processes whose command line holds `marker` (in any PID namespace)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if marker.encode() in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return found


async def test_a_setsid_daemon_does_not_outlive_the_check() -> None:
    marker = f"statex-daemon-{uuid.uuid4().hex}"
    daemon = f"""
import os, pathlib, subprocess, sys, time

def test_start_a_daemon():
    code = "import time\\n# {marker}\\nopen('started', 'w').close()\\nwhile True: time.sleep(1)"
    child = subprocess.Popen([sys.executable, "-c", code], start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not pathlib.Path("started").exists():
        assert time.monotonic() < deadline and child.poll() is None
        time.sleep(0.05)
    assert os.getsid(child.pid) == child.pid  # a session of its own, as a daemon makes
    assert {marker!r}.encode() in pathlib.Path(f"/proc/{{child.pid}}/cmdline").read_bytes()
"""
    result = await asyncio.to_thread(verify, ("test_daemon.py", daemon))
    assert check(result, "pytest")[0], result.failures()

    async def gone() -> bool:
        return not _processes_with(marker)

    await eventually(gone, within=10, what="the daemon to die with the check's PID namespace")


async def test_a_cancelled_verification_kills_its_run_at_once() -> None:
    """The activity cancelled (its workflow cancelled, or the worker stopping past its grace): the jailed run is
    killed at the next poll, not left running to its wall limit (which would hold the stopping worker)."""
    marker = f"statex-abandoned-{uuid.uuid4().hex}"
    waiting = f"""
import subprocess, sys

def test_wait_for_ever():
    subprocess.run([sys.executable, "-c", "import time\\n# {marker}\\nwhile True: time.sleep(1)"])
"""
    activities = SandboxActivities()
    activities.sandbox = sandbox(SandboxLimits(cpu_seconds=60, memory_bytes=FAST.memory_bytes, wall_seconds=300))
    environment = ActivityEnvironment()
    running = asyncio.create_task(environment.run(activities.verify_code, request(("test_wait.py", waiting))))

    async def started() -> bool:
        return bool(_processes_with(marker))

    async def gone() -> bool:
        return not _processes_with(marker)

    await eventually(started, within=60, what="the jailed run to start")
    environment.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    await eventually(gone, within=10, what="the jailed run to be killed")


def test_a_busy_loop_is_killed_at_the_cpu_limit() -> None:
    result = verify(("test_spin.py", "def test_spin():\n    while True:\n        pass\n"))
    passed, output = check(result, "pytest")
    assert not passed
    assert "SIGXCPU" in output or "SIGKILL" in output
    assert "wall time limit" not in output  # the CPU limit stopped it, not the wall clock


def test_a_busy_loop_is_killed_at_the_wall_limit_with_its_whole_process_group() -> None:
    limits = SandboxLimits(cpu_seconds=60, wall_seconds=2)
    result = verify(("test_spin.py", "def test_spin():\n    while True:\n        pass\n"), limits=limits)
    passed, output = check(result, "pytest")
    assert not passed
    assert "killed at the wall time limit (2 s)" in output


def test_a_two_gigabyte_allocation_fails_at_the_memory_limit() -> None:
    result = verify(("test_hog.py", "def test_hog():\n    hog = bytearray(2 * 1024**3)\n    assert hog\n"))
    passed, output = check(result, "pytest")
    assert not passed
    assert "MemoryError" in output


def test_a_fork_bomb_stops_at_the_process_limit() -> None:
    bomb = """
import os, pytest, signal

def test_fork_without_end():
    children = []
    with pytest.raises(BlockingIOError):
        for _ in range(1000):
            pid = os.fork()
            if pid == 0:
                signal.pause()  # (os has no pause: the children used to die of an AttributeError in pytest's hands)
                os._exit(0)
            children.append(pid)
    assert len(children) < 64
"""
    result = verify(("test_bomb.py", bomb))
    assert check(result, "pytest")[0], result.failures()


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


# One customer per run: limits on the whole run (every process it starts together), and runs apart.


UNCAPTURED = ("pytest.ini", "[pytest]\naddopts = -s\n")
"""Generated code may configure pytest: here so that what it prints reaches the output even when it passes or its
process is killed (the positive controls)."""


def test_the_sandbox_has_per_run_cgroups_here() -> None:
    """The attack tests below prove totals through the run's cgroup: on this host the worker may make one."""
    made = sandbox()
    assert made.cgroups.available, made.availability.reason
    assert made.availability.reason is None


@pytest.mark.slow
def test_several_children_together_stop_at_the_runs_memory_limit() -> None:
    limits = SandboxLimits(memory_bytes=512 * 2**20, total_memory_bytes=256 * 2**20, wall_seconds=30)
    hogs = """
import pathlib, subprocess, sys, time

HOLD = '''
import pathlib, sys, time
block = b"x" * (150 * 1024 * 1024)  # touched: resident, each child below its own address-space limit
print("HELD", sys.argv[1], flush=True)
pathlib.Path("held-" + sys.argv[1]).touch()
deadline = time.monotonic() + 10
while len(list(pathlib.Path().glob("held-*"))) < 4 and time.monotonic() < deadline:
    time.sleep(0.05)
'''

def test_four_children_hold_150_mb_each():
    children = [subprocess.Popen([sys.executable, "-c", HOLD, str(n)]) for n in range(4)]
    codes = [child.wait(timeout=30) for child in children]
    print("CODES", codes, flush=True)
    assert all(code == 0 for code in codes)
"""
    result = verify(("test_hogs.py", hogs), UNCAPTURED, limits=limits)
    passed, output = check(result, "pytest")
    assert not passed
    assert "HELD" in output, output  # positive control: the hostile code ran and one child did hold its block
    assert output.count("HELD ") < 4  # never all four at once: 600 MB > the run's 256 MB
    assert "killed at the run's total memory limit (256 MB)" in output, output
    assert "-9" in output  # the kernel killed a child (SIGKILL)


def test_children_forking_together_stop_at_the_runs_process_limit() -> None:
    limits = SandboxLimits(processes=24, cpu_seconds=10, wall_seconds=30)
    bomb = """
import os, pathlib, signal, time

def test_four_children_fork_without_end():
    for n in range(4):
        if os.fork() == 0:  # each child forks as many as it can: alone, each stays under the limit
            try:
                made = 0
                try:
                    for _ in range(100):
                        if os.fork() == 0:
                            signal.pause()
                            os._exit(0)
                        made += 1
                except OSError:
                    pass
                pathlib.Path(f"count-{n}").write_text(str(made))
                signal.pause()
            finally:
                os._exit(0)
    deadline = time.monotonic() + 15
    while len(list(pathlib.Path().glob("count-*"))) < 4:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    total = sum(int(path.read_text()) for path in pathlib.Path().glob("count-*"))
    print("TOTAL", total, flush=True)
    assert 0 < total < 24
"""
    result = verify(("test_bomb.py", bomb), UNCAPTURED, limits=limits)
    passed, output = check(result, "pytest")
    assert passed, output
    total = int(output.split("TOTAL ")[1].split()[0])
    assert 1 <= total < 24  # positive control: children did fork; all together stayed under the run's limit


def test_many_files_stop_at_the_runs_disk_limit() -> None:
    limits = SandboxLimits(file_bytes=1024 * 1024, disk_bytes=8 * 1024 * 1024, wall_seconds=30)
    fill = """
import errno, pathlib

def test_128_files_of_1_mb():
    written = 0
    try:
        for n in range(128):
            pathlib.Path(f"fill-{n}").write_bytes(b"x" * (1024 * 1024))
            written += 1
    except OSError as error:
        print("STOPPED", written, errno.errorcode[error.errno], flush=True)
        raise
"""
    disk = shutil.disk_usage(tempfile.gettempdir()).used
    result = verify(("test_fill.py", fill), UNCAPTURED, limits=limits)
    passed, output = check(result, "pytest")
    assert not passed
    assert "STOPPED" in output, output  # positive control: files were written until the run's folder was full
    written = int(output.split("STOPPED ")[1].split()[0])
    assert 1 <= written < 8 and "ENOSPC" in output
    assert shutil.disk_usage(tempfile.gettempdir()).used - disk < 64 * 1024 * 1024  # the host's disk: untouched


@pytest.mark.slow
async def test_setsid_spinners_stop_at_the_runs_cpu_limit_and_burn_nothing_after() -> None:
    marker = f"statex-spinner-{uuid.uuid4().hex}"
    limits = SandboxLimits(cpu_seconds=60, total_cpu_seconds=3, cpus=2, wall_seconds=40)
    spin = f"""
import subprocess, sys

def test_spin_in_four_sessions():
    code = "# {marker}\\nwhile True: pass"
    spinners = [subprocess.Popen([sys.executable, "-c", code], start_new_session=True) for _ in range(4)]
    print("SPINNING", len(spinners), flush=True)
    for spinner in spinners:
        spinner.wait()
"""
    result = await asyncio.to_thread(verify, ("test_spin.py", spin), UNCAPTURED, limits=limits)
    passed, output = check(result, "pytest")
    assert not passed
    assert "SPINNING 4" in output  # positive control
    # the run's total, not the wall limit nor the 60 s each spinner alone was allowed
    assert "killed at the CPU time limit of the whole run (3 s)" in output, output

    async def gone() -> bool:
        return not _processes_with(marker)

    # Gone, so burning nothing: the spinners ran in sessions of their own, outside the check's process group,
    # and died with the run's PID namespace (and its cgroup, which the worker removes only once it is empty).
    await eventually(gone, within=10, what="the spinners to die with the run")


VICTIM = """
import pathlib, time

def test_victim_{token}():
    print("VICTIM-STARTED", flush=True)
    deadline = time.monotonic() + 30
    while not pathlib.Path("go").exists():  # the test says when the other run is done
        assert time.monotonic() < deadline
        time.sleep(0.05)
    mine = sorted(str(path) for path in pathlib.Path().rglob("*") if "__pycache__" not in str(path))
    print("VICTIM-SAW", mine, flush=True)
    assert mine == ["go", "pytest.ini", "test_victim_{token}.py"], mine
"""

ATTACKER = """
import glob, os, pathlib, sys

def test_reach_the_other_run():
    print("ATTACKER-RAN", flush=True)
    targets = {folders!r} + glob.glob("/tmp/verify-*") + glob.glob("/proc/*/cwd") + glob.glob("/proc/*/root/sandbox")
    planted, read = [], []
    for folder in targets:
        try:
            pathlib.Path(folder, "conftest.py").write_text("def pytest_configure(): raise SystemExit('planted')")
            if not os.path.samefile(folder, "."):
                planted.append(folder)
        except OSError:
            pass
        for name in ("test_victim_{token}.py",):
            try:
                read.append(pathlib.Path(folder, name).read_text())
            except OSError:
                pass
    interpreter = (sys.prefix, sys.base_prefix)  # the bound virtualenv: thousands of files, none of the victim's
    for root, _, files in os.walk("/"):
        if root.startswith(("/proc", "/sys", "/usr", "/dev", *interpreter)):
            continue
        read += [root for name in files if "{token}" in name]
    print("ATTACKER-TRIED", len(targets), flush=True)
    assert (planted, read) == ([], [])
"""


@pytest.mark.slow
async def test_one_run_cannot_plant_a_file_in_or_read_another_runs_folder() -> None:
    token = uuid.uuid4().hex
    victim_file = f"test_victim_{token}.py"
    victim = asyncio.create_task(asyncio.to_thread(verify, (victim_file, VICTIM.format(token=token)), UNCAPTURED))

    async def victim_running() -> bool:
        return bool(_processes_with(victim_file))

    await eventually(victim_running, within=20, what="the victim's check to run")
    # The victim's folder on the host (the worker's copy of its files): the attacker is told where it is.
    folders = _host_folders_holding(victim_file)
    assert folders
    attack = ATTACKER.format(folders=folders, token=token)
    # CPU seconds to spare: the search must not be cut short by the per-process limit on a busy machine.
    roomy = SandboxLimits(cpu_seconds=10, wall_seconds=40)
    attacker = await asyncio.to_thread(verify, ("test_attack.py", attack), UNCAPTURED, limits=roomy)
    passed, output = check(attacker, "pytest")
    assert "ATTACKER-RAN" in output and "ATTACKER-TRIED" in output  # positive control
    assert passed, output
    _let_go(victim_file)
    result = await victim
    passed, output = check(result, "pytest")
    assert "VICTIM-SAW" in output and passed, output
    assert not any((Path(folder) / "conftest.py").exists() for folder in folders)


def _host_folders_holding(name: str) -> list[str]:
    """The worker's folders (its copy of a run's files) that hold a file `name`."""
    return [str(path.parent) for path in Path(tempfile.gettempdir()).glob(f"verify-*/{name}")]


def _let_go(name: str) -> None:
    """Puts `go` in the run folder of the check whose command line names `name`, through its /proc."""
    # As root, as the jail's user: a file of uid 0 cannot be made in a file system of its user namespace (EOVERFLOW).
    drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
    for pid in _processes_with(name):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/cwd") == "/sandbox":  # the check's pytest, not bwrap (its cwd is the host's /)
                subprocess.run([*drop, "touch", f"/proc/{pid}/cwd/go"], check=False, timeout=10)


async def test_killing_its_parent_and_every_process_leaves_the_worker_and_nothing_of_the_jail() -> None:
    marker = f"statex-killer-{uuid.uuid4().hex}"
    killer = f"""
import os, signal, subprocess, sys

def test_kill_everything():
    subprocess.Popen([sys.executable, "-c", "# {marker}\\nimport time\\nwhile True: time.sleep(1)"],
                     start_new_session=True)
    print("KILLING", os.getppid(), flush=True)
    os.kill(os.getppid(), signal.SIGKILL)
    os.kill(-1, signal.SIGKILL)  # kill -9 -1: every process this one may signal
    print("STILL-HERE", flush=True)
"""
    result = await asyncio.to_thread(verify, ("test_killer.py", killer), UNCAPTURED)
    passed, output = check(result, "pytest")
    assert "KILLING" in output  # positive control: the hostile code ran
    assert passed and "STILL-HERE" in output, output  # its parent is the jail's init, out of its reach
    assert result.sandbox_available  # the worker (this process) is alive and has the verdict

    async def gone() -> bool:
        return not _processes_with(marker)

    await eventually(gone, within=10, what="what it started to die with the run")


WORKER = """
import sys, uuid
from activities.sandbox import Sandbox, SandboxLimits
from models.messages.prototypes import VerificationRequest
code = sys.argv[1]
request = VerificationRequest(prototype_id=uuid.uuid4(), round=0, code_answers=[code])
Sandbox(SandboxLimits(wall_seconds=60)).verify(request)
"""


async def test_when_the_worker_is_killed_nothing_of_the_jail_survives_it() -> None:
    marker = f"statex-orphan-{uuid.uuid4().hex}"
    daemon = f"""
import subprocess, sys, time

def test_outlive_the_worker():
    subprocess.Popen([sys.executable, "-c", "# {marker}\\nimport time\\nwhile True: time.sleep(1)"],
                     start_new_session=True)
    deadline = time.monotonic() + 50
    while time.monotonic() < deadline:
        time.sleep(0.1)
"""
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WORKER, answer(("test_orphan.py", daemon)), cwd=ROOT
    )
    try:

        async def started() -> bool:
            assert worker.returncode is None
            return bool(_processes_with(marker))

        await eventually(started, within=30, what="the jail's daemon to start (positive control)")
    finally:
        worker.kill()  # SIGKILL: the worker gets no chance to clean up
        await worker.wait()

    async def gone() -> bool:
        return not _processes_with(marker) and not _processes_with("test_orphan.py")

    await eventually(gone, within=10, what="the jail to die with the worker (--die-with-parent)")
