"""Verification of generated code in a sandbox: the files a code answer names, checked in a subprocess with hard
limits, before anyone is asked to pay for or run them.

The files (the same path-named fenced blocks packaging puts in the zip) are written to a fresh temporary folder.
Every check runs as a child process that:
- has an EMPTY environment (only a minimal PATH, HOME in the folder, no bytecode): no key of the worker reaches it;
- lives in a network namespace of its own (`unshare -n`, or `unshare -rn` as an unprivileged user) where no
  connection can be opened, not even to 127.0.0.1. Where neither works (a container without the capability)
  the check still runs, `network_isolated` is false in the result and VERIFICATION.md says so: the empty
  environment then only keeps proxies and keys away, not the network itself;
- runs as `nobody` when the worker is root and `setpriv` is there, so it cannot read the worker's files;
- has CPU seconds (RLIMIT_CPU), address space (RLIMIT_AS), file size (RLIMIT_FSIZE) and process count
  (RLIMIT_NPROC: not enforced for root, hence the drop to nobody) limits, in a session of its own: at the wall
  time limit the whole process group is killed.
Checks: each Python file compiles, each JSON / TOML / YAML file parses, and when the files include tests
(test_*.py or *_test.py) they run with pytest (the worker's own interpreter, so pytest is there).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from temporalio import activity

from activities.packaging import code_files
from models.messages.prototypes import SandboxCheck, VerificationRequest, VerificationResult

MAX_OUTPUT_CHARS = 4_000
"""Each check's output is trimmed to this (its end kept: that is where tracebacks and summaries are)."""
MINIMAL_PATH = "/usr/local/bin:/usr/bin:/bin"
NOBODY = 65534
_STRUCTURED = {".json", ".toml", ".yaml", ".yml"}

# Run inside the sandbox with `python -I -c`: parses every named file and prints one JSON verdict per file.
_SYNTAX_CHECKER = """
import json, sys, tomllib
results = []
for path in sys.argv[1:]:
    try:
        text = open(path, encoding="utf-8").read()
        if path.endswith(".py"):
            compile(text, path, "exec", dont_inherit=True)
        elif path.endswith(".json"):
            json.loads(text)
        elif path.endswith(".toml"):
            tomllib.loads(text)
        else:
            import yaml
            list(yaml.safe_load_all(text))
        results.append([path, True, ""])
    except BaseException as error:
        results.append([path, False, f"{type(error).__name__}: {error}"])
print(json.dumps(results))
"""


@dataclass(frozen=True)
class SandboxLimits:
    cpu_seconds: int = 20
    memory_bytes: int = 1024 * 1024 * 1024
    file_bytes: int = 16 * 1024 * 1024
    processes: int = 64
    wall_seconds: float = 60.0


@dataclass(frozen=True)
class Ran:
    returncode: int | None
    """None: killed at the wall time limit."""
    output: str


def network_jail() -> list[str] | None:
    """The command prefix that gives a child a network namespace of its own here, or None if none works."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    for prefix in ([unshare, "-n"], [unshare, "-rn"]):
        try:
            done = subprocess.run([*prefix, "true"], capture_output=True, timeout=10, env={"PATH": MINIMAL_PATH})
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0:
            return prefix
    return None


def _drop_privileges() -> list[str]:
    """As root, run the check as nobody (RLIMIT_NPROC binds, the worker's files are out of reach)."""
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        return []
    return [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


def trimmed(text: str, limit: int = MAX_OUTPUT_CHARS) -> str:
    return text if len(text) <= limit else f"[... {len(text) - limit} characters cut ...]\n{text[-limit:]}"


def is_test_file(path: str) -> bool:
    name = PurePosixPath(path).name
    return name.endswith(".py") and (name.startswith("test_") or name.endswith("_test.py"))


class Sandbox:
    def __init__(self, limits: SandboxLimits | None = None, *, jail: list[str] | None = None) -> None:
        self.limits = limits or SandboxLimits()
        self.jail = jail
        self.privileges = _drop_privileges()

    @property
    def network_isolated(self) -> bool:
        return self.jail is not None

    def _limit(self) -> None:  # runs in the child between fork and exec: only async-signal-safe calls
        limits = self.limits
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds))
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))
        resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes, limits.processes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    def run(self, folder: Path, arguments: list[str]) -> Ran:
        """`python <arguments>` in `folder`, under every limit; the process group dies at the wall limit, and
        whatever it left running dies when it ends. Output goes to a file, not a pipe, so RLIMIT_FSIZE bounds
        it and the worker never buffers more than the tail it keeps."""
        environment = {"PATH": MINIMAL_PATH, "HOME": str(folder), "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8"}
        command = [*(self.jail or []), *self.privileges, sys.executable, *arguments]
        with tempfile.TemporaryFile() as output:
            process = subprocess.Popen(
                command,
                cwd=folder,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=self._limit,  # the limits must be set in the child before exec
            )
            try:
                returncode: int | None = process.wait(timeout=self.limits.wall_seconds)
            except subprocess.TimeoutExpired:
                returncode = None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            size = output.seek(0, os.SEEK_END)
            output.seek(max(0, size - 4 * MAX_OUTPUT_CHARS))
            text = output.read().decode("utf-8", "replace")
        return Ran(returncode, text)

    def verify(self, request: VerificationRequest) -> VerificationResult:
        files: dict[str, str] = {}
        for answer in request.code_answers:
            files |= code_files(answer)
        with tempfile.TemporaryDirectory(prefix="verify-") as name:
            folder = Path(name)
            for path, text in files.items():
                target = folder / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8")
            if self.privileges:
                _open_to_nobody(folder)
            checks = self._syntax(folder, sorted(files))
            tests = sorted(path for path in files if is_test_file(path))
            if tests:
                checks.append(self._pytest(folder, tests))
        return VerificationResult(
            round=request.round,
            passed=bool(files) and all(check.passed for check in checks),
            files=sorted(files),
            checks=checks,
            network_isolated=self.network_isolated,
        )

    def _syntax(self, folder: Path, paths: list[str]) -> list[SandboxCheck]:
        checked = [path for path in paths if PurePosixPath(path).suffix in {".py", *_STRUCTURED}]
        if not checked:
            return []
        ran = self.run(folder, ["-I", "-c", _SYNTAX_CHECKER, *checked])
        try:
            verdicts = json.loads(ran.output.strip().splitlines()[-1])
        except (ValueError, IndexError):
            why = "killed at the wall time limit" if ran.returncode is None else f"exit status {ran.returncode}"
            return [
                SandboxCheck(name="syntax", passed=False, output=trimmed(f"the checker failed ({why})\n{ran.output}"))
            ]
        return [
            SandboxCheck(name=f"{_kind(path)} {path}", passed=passed, output=trimmed(output))
            for path, passed, output in verdicts
        ]

    def _pytest(self, folder: Path, tests: list[str]) -> SandboxCheck:
        ran = self.run(folder, ["-m", "pytest", "-q", "-p", "no:cacheprovider", "--color=no", *tests])
        if ran.returncode is None:
            verdict = f"killed at the wall time limit ({self.limits.wall_seconds:g} s)\n"
        elif ran.returncode < 0:
            verdict = f"killed by signal {signal.Signals(-ran.returncode).name} (a CPU, memory or file limit)\n"
        else:
            verdict = ""
        return SandboxCheck(
            name="pytest " + " ".join(tests), passed=ran.returncode == 0, output=trimmed(verdict + ran.output)
        )


def _kind(path: str) -> str:
    return "compile" if path.endswith(".py") else "parse"


def _open_to_nobody(folder: Path) -> None:
    """The temporary folder is the worker's (0700): nobody must be able to read it and write its cache files."""
    for directory, _, names in os.walk(folder):
        os.chmod(directory, 0o777)
        for name in names:
            os.chmod(os.path.join(directory, name), 0o644)


class SandboxActivities:
    def __init__(self, limits: SandboxLimits | None = None) -> None:
        self.sandbox = Sandbox(limits, jail=network_jail())

    @activity.defn
    async def verify_code(self, request: VerificationRequest) -> VerificationResult:
        """The same answers give the same verdict, so a retried attempt is harmless."""
        return await asyncio.to_thread(self.sandbox.verify, request)
