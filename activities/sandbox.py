"""Verification of generated code in a sandbox: the files a code answer names, checked in a bubblewrap (`bwrap`)
jail with hard limits, before anyone is asked to pay for or run them. Generated code is hostile.

The files (the same path-named fenced blocks packaging puts in the zip) are written to a fresh folder (0700,
one per run). Every check runs as `bwrap` with:
- new user, PID, network, IPC, UTS (and cgroup) namespaces (`--unshare-all`), no nested user namespace, every
  capability dropped, uid / gid 65534 inside; as root the worker first drops to nobody (`setpriv`), so the
  jail's processes count (RLIMIT_NPROC) and own files as nobody, never as root;
- a root of its own: a fresh /proc (its PID namespace only), a minimal read-only /dev, private size-capped
  tmpfs /tmp and /dev/shm, the system libraries and the interpreter (its virtualenv and its base prefix, at
  their own paths) read-only, the run's folder at /sandbox the only writable place, nothing else of the host
  (no /etc, /home, /run or /var/run: no host socket, no worker file, no secret);
- no network (only its own loopback), an EMPTY environment (a minimal PATH, HOME in the folder);
- `--die-with-parent` and `--new-session`; the PID namespace dies with the check, so nothing it started (a
  `setsid` daemon included) outlives it, and the jail dies with the worker;
- CPU seconds (RLIMIT_CPU), address space (RLIMIT_AS), file size (RLIMIT_FSIZE) and process count
  (RLIMIT_NPROC, set inside the jail: it counts the jail's processes) limits; at the wall time limit the
  whole process group is killed;
- limits on the whole run (activities/sandbox_cgroups.py): the run's folder is a size-capped tmpfs the files are
  copied into from a read-only bind (nothing it writes reaches the host's disk, and no run sees another's copy),
  and where the worker may make cgroups (v2, or v1 on a hybrid host) each run has its own: memory (tmpfs pages
  included, no swap), processes and a CPU rate (cores at once), its CPU time summed over every process it started
  and ended at a limit. Where no cgroup can be made (an unprivileged container) the sandbox still runs, degraded
  and saying so in its availability reason: the isolation is whole, only the totals of memory and CPU time of one
  run are then bounded per process and by the wall time, and all runs together by the container's limits.
The interpreter may live under a folder only the worker may enter (a 0700 home, `mktemp -d`): as root,
what the jail binds is first mounted where nobody can reach it, in a private mount namespace
(`Sandbox.command`). Where bwrap is missing or cannot make its namespaces, the sandbox is UNAVAILABLE: it
says why at worker startup and in /api/capabilities, and every verdict is "not verified: sandbox
unavailable" without running anything (generated code never runs without the jail).
Checks: each Python file compiles, each JSON / TOML / YAML file parses, and when the files include tests
(test_*.py or *_test.py) they run with pytest (runtime dependencies of the project, as is PyYAML). When they all
pass and the code has its entry point (main.py), the app is started in a jail of its own, its main page fetched
and shot by a headless browser (activities/sandbox_preview.py): an app that does not answer fails a check too.
What a check prints is the hostile code's: DATA. It is kept bounded (its last MAX_OUTPUT_CHARS characters),
without escape sequences or control characters (`trimmed`), and shown only fenced (VERIFICATION.md) or quoted
as untrusted output (the fix prompt): `models.untrusted`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from temporalio import activity

from activities.packaging import code_files
from activities.sandbox_cgroups import Cgroups, RunCgroup, RunLimits
from activities.sandbox_preview import (
    ENTRY_POINT,
    PREVIEW_MAX_BYTES,
    Browser,
    PreviewLimits,
    Started,
    driver_arguments,
    started,
)
from models.messages.prototypes import SandboxCheck, VerificationRequest, VerificationResult
from models.untrusted import cleaned

log = logging.getLogger(__name__)

MAX_OUTPUT_CHARS = 4_000
"""Each check's output is trimmed to this (its end kept: that is where tracebacks and summaries are)."""
MINIMAL_PATH = "/usr/local/bin:/usr/bin:/bin"
NOBODY = 65534
WORK = "/sandbox"
"""The run's folder inside the jail (its working directory and HOME): a size-capped tmpfs the files are copied into."""
INPUT = "/input"
"""Where the worker's copy of the files is bound, read-only, for the launcher to copy into WORK."""
POLL_SECONDS = 0.1

_abandoned: ContextVar[threading.Event | None] = ContextVar("sandbox_run_abandoned", default=None)
"""Set by verify_code for the thread it runs a verification in: once the event is set (the activity cancelled,
as when the worker stops past its grace), the run in progress is killed at the next poll rather than left to its
wall limit, so the worker process can exit. The thread inherits the variable (asyncio.to_thread copies the
context)."""
"""How often the worker reads a run's CPU time while it runs."""
STAGE = "/tmp"
"""As root: where the first bwrap mounts (on a tmpfs of its own) what the jail binds, for nobody to reach."""
TMP_BYTES = 64 * 1024 * 1024
"""The jail's private /tmp (tmpfs) holds at most this."""
SHM_BYTES = 16 * 1024 * 1024
"""Its /dev/shm (POSIX shared memory, multiprocessing's semaphores) at most this."""
SYSTEM_LIBRARIES = ("/usr/lib", "/usr/lib64", "/usr/lib32", "/usr/libx32")
TOP_LIBRARIES = ("/lib", "/lib64", "/lib32", "/libx32")
"""Symbolic links to usr/lib* on a merged-/usr system (made as links inside), folders elsewhere (bound)."""
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

# The jail's first program: sets RLIMIT_NPROC inside the jail's user namespace (so the limit counts the jail's
# processes, not every process of the worker's user), copies the files from the read-only INPUT into the run's
# tmpfs (so whatever the check writes stays in memory, size-capped, never on the host's disk), then becomes the check.
_LAUNCHER = (
    "import os, resource, shutil, sys\n"
    "n = int(sys.argv[1])\n"
    "resource.setrlimit(resource.RLIMIT_NPROC, (n, n))\n"
    f"shutil.copytree({INPUT!r}, {WORK!r}, symlinks=True, dirs_exist_ok=True)\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)

# What the probe runs in the jail: the tools the checks need must be importable by the sandbox's interpreter.
_PROBE = "import json, tomllib, pytest, yaml; print('sandbox ready')"

UNAVAILABLE = "sandbox unavailable"


@dataclass(frozen=True)
class SandboxLimits:
    cpu_seconds: int = 20
    """CPU seconds of each process (RLIMIT_CPU)."""
    total_cpu_seconds: float = 40.0
    """CPU seconds of all the run's processes together (its cgroup's usage, where it has one), the gone included."""
    memory_bytes: int = 1024 * 1024 * 1024
    """Address space of each process (RLIMIT_AS)."""
    file_bytes: int = 16 * 1024 * 1024
    processes: int = 64
    """Processes (threads) of the whole run: RLIMIT_NPROC in the jail's user namespace, and its cgroup's pids.max."""
    wall_seconds: float = 60.0
    disk_bytes: int = 64 * 1024 * 1024
    """The run's folder: a tmpfs of this size (the files are copied in), so the run never writes the host's disk."""
    total_memory_bytes: int = 1024 * 1024 * 1024
    """Memory of the whole run, its tmpfs pages included (the cgroup's memory limit, no swap)."""
    cpus: float = 1.0
    """Cores the whole run may use at once (the cgroup's CPU quota): one run cannot starve the others."""


@dataclass(frozen=True)
class Jail:
    """What one run's jail allows beyond the files: a check's, or the started app's with its browser."""

    processes: int
    address_space: int | None
    """RLIMIT_AS of every process in it; None: unlimited (the browser's jail, whose driver limits the app)."""
    wall_seconds: float
    binds: tuple[str, ...] = ()
    """More folders of the host, read-only at their own paths (the browser and its fonts)."""
    output_bytes: int = 4 * MAX_OUTPUT_CHARS
    """The end of the run's output the worker reads."""


@dataclass(frozen=True)
class Ran:
    returncode: int | None
    """None: killed by the worker at a limit of the whole run (`killed` says which)."""
    output: str
    killed: str | None = None
    """Which limit of the whole run ended it: the wall time, or the CPU time of all its processes together."""


@dataclass(frozen=True)
class Interpreter:
    """The Python that runs the checks, and what of the host it needs: `binds` (host path, path inside), all
    read-only; the system libraries are bound besides."""

    executable: str
    binds: tuple[tuple[str, str], ...]

    @classmethod
    def find(cls, executable: str | None = None) -> Interpreter:
        """This process's interpreter, or another one (asked for its prefixes: it is the project's, trusted)."""
        if executable is None:
            executable, prefixes = sys.executable, [sys.prefix, sys.base_prefix, sys.exec_prefix]
        else:
            asked = "import json, sys; print(json.dumps([sys.prefix, sys.base_prefix, sys.exec_prefix]))"
            done = subprocess.run(
                [executable, "-I", "-c", asked], capture_output=True, text=True, timeout=30, check=True
            )
            prefixes = json.loads(done.stdout)
        executable = os.path.abspath(executable)
        real = os.path.realpath(executable)
        # A virtualenv, its base interpreter's prefix (where its python links to), at their own paths; a prefix
        # that is the system's (a distribution's Python) is not bound whole: its libraries are already there.
        wanted = {os.path.abspath(path) for path in prefixes} | {os.path.dirname(os.path.dirname(real))}
        system = {"/", "/usr"}
        wanted = {"/usr/local/lib" if path == "/usr/local" else path for path in wanted if path not in system}
        roots = _outermost(wanted)
        binds = [(path, path) for path in roots]
        for path in (executable, *_links(executable)):
            if not _under(path, [*roots, *SYSTEM_LIBRARIES]):
                binds.append((real, path))  # the binary itself, at every link on the way: /usr/bin/python3...
        return cls(executable, tuple(dict.fromkeys(binds)))


def _links(path: str) -> list[str]:
    """Where a chain of symbolic links goes, step by step (venv/bin/python -> /usr/bin/python3 -> python3.11)."""
    steps: list[str] = []
    while os.path.islink(path) and len(steps) < 40:
        path = os.path.normpath(os.path.join(os.path.dirname(path), os.readlink(path)))
        steps.append(path)
    return steps


def _under(path: str, roots: list[str] | tuple[str, ...]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def _outermost(paths: set[str]) -> tuple[str, ...]:
    """The paths, without those inside another one of them, shortest first."""
    kept: list[str] = []
    for path in sorted(paths, key=len):
        if not _under(path, kept):
            kept.append(path)
    return tuple(kept)


@dataclass(frozen=True)
class Availability:
    available: bool
    reason: str | None = None
    """Why not, in words an operator can act on; when available, what the sandbox runs without (no per-run
    cgroups: limits per process and per jail only)."""


def trimmed(text: str, limit: int = MAX_OUTPUT_CHARS) -> str:
    """The code's output as it is kept (the verdict, the fix prompt, VERIFICATION.md): escape sequences and
    control characters stripped (`models.untrusted.cleaned`: it is data), then its last `limit` characters."""
    text = cleaned(text)
    return text if len(text) <= limit else f"[... {len(text) - limit} characters cut ...]\n{text[-limit:]}"


def is_test_file(path: str) -> bool:
    name = PurePosixPath(path).name
    return name.endswith(".py") and (name.startswith("test_") or name.endswith("_test.py"))


class Sandbox:
    """Checks code in the bwrap jail. `bwrap`: its name on the worker's PATH or its path; `python`: the
    interpreter that runs the checks (this one by default). Probed once, when made: `availability`."""

    def __init__(
        self,
        limits: SandboxLimits | None = None,
        *,
        bwrap: str = "bwrap",
        python: str | None = None,
        previews: bool = True,
        browser: str = "/usr/bin/chromium",
        preview_limits: PreviewLimits | None = None,
    ) -> None:
        self.limits = limits or SandboxLimits()
        self.preview_limits = preview_limits or PreviewLimits()
        self.browser = Browser.find(browser) if previews else "previews are turned off (PREVIEWS_ENABLED=false)"
        """The browser that shoots a started app's page, or why there is none."""
        self.as_root = os.geteuid() == 0
        self.bwrap = shutil.which(bwrap)
        self.setpriv = shutil.which("setpriv")
        self.interpreter = Interpreter.find(python)
        self.cgroups = Cgroups.find()
        self.availability = self._probe(bwrap)

    @property
    def available(self) -> bool:
        return self.availability.available

    def _probe(self, bwrap: str) -> Availability:
        """Runs a jail for real: a sandbox that cannot isolate, or whose interpreter lacks its tools, is
        unavailable, and says why."""
        if self.bwrap is None:
            where = f"no file {bwrap}" if "/" in bwrap else f"{bwrap!r} is not on the worker's PATH"
            return Availability(False, f"bubblewrap not found ({where}): install it, or set SANDBOX_BWRAP")
        if self.as_root and self.setpriv is None:
            return Availability(False, "the worker runs as root and setpriv (util-linux) is missing to drop to nobody")
        with _work_folder(self.as_root) as folder:
            try:
                ran = self._jailed(folder, ["-I", "-c", _PROBE], self._check_jail())
            except OSError as error:
                return Availability(False, f"bwrap could not start: {error}")
        if ran.returncode != 0 or "sandbox ready" not in ran.output:
            said = " ".join(ran.output.split())[-600:] or f"exit status {ran.returncode}"
            return Availability(False, f"the jail could not run the interpreter's checks ({said})")
        if not self.cgroups.available:
            # Degraded, not closed: the jail still isolates, and memory, CPU time, processes and disk stay bounded
            # per process, per jail and by the tmpfs sizes; only the totals of memory and CPU time of a run are not.
            return Availability(
                True,
                f"no per-run cgroups ({self.cgroups.reason}): memory and CPU time are limited per process, "
                "processes per jail, disk by the jail's tmpfs sizes, and all runs together by the worker's container",
            )
        return Availability(True)

    def _check_jail(self) -> Jail:
        limits = self.limits
        return Jail(limits.processes, limits.memory_bytes, limits.wall_seconds)

    def _app_jail(self) -> Jail:
        """The started app's: room for the browser's threads and address space (the driver limits the app's own
        to a check's), its wall time the app's start and the shot's, with time for the interpreters to start."""
        preview = self.preview_limits
        return Jail(
            preview.browser_processes,
            None,
            preview.start_seconds + preview.shot_seconds + 20,
            self.browser.binds if isinstance(self.browser, Browser) else (),
            output_bytes=2 * PREVIEW_MAX_BYTES,  # the verdict carries the picture, in base64
        )

    def _limit(self, cgroup: RunCgroup | None, jail: Jail) -> None:  # in the child between fork and exec
        if cgroup is not None:
            cgroup.enter()  # before bwrap starts: every process of the run is in the run's cgroup
        limits = self.limits
        address_space = resource.RLIM_INFINITY if jail.address_space is None else jail.address_space
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds))
        resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    def command(self, folder: Path, arguments: list[str], jail: Jail | None = None) -> list[str]:
        """bwrap <jail> -- python <launcher> python <arguments>, with `folder` the jail's working directory.
        As root, the jail is made as nobody (setpriv), which may not walk into a folder only root may enter
        (a 0700 home holding the interpreter): a first bwrap, as root, mounts what the jail binds on a tmpfs
        of a private mount namespace where nobody can reach it, then drops to nobody and makes the jail."""
        assert self.bwrap is not None
        jail = jail or self._check_jail()
        binds = [(host, inside, False) for host, inside in self.interpreter.binds] + [(str(folder), INPUT, False)]
        binds += [(path, path, False) for path in jail.binds]
        stage: list[str] = []
        if self.as_root:
            assert self.setpriv is not None
            stage = [self.bwrap, "--dev-bind", "/", "/", "--tmpfs", STAGE, "--die-with-parent"]
            staged = []
            for number, (host, inside, writable) in enumerate(binds):
                stage += ["--bind" if writable else "--ro-bind", host, f"{STAGE}/{number}"]
                staged.append((f"{STAGE}/{number}", inside, writable))
            binds = staged
            stage += ["--", self.setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
        sandbox = [
            self.bwrap,
            "--unshare-all",
            "--unshare-user",
            "--disable-userns",
            "--die-with-parent",
            "--new-session",
            "--cap-drop",
            "ALL",
            "--uid",
            str(NOBODY),
            "--gid",
            str(NOBODY),
            "--hostname",
            "sandbox",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--remount-ro",
            "/dev",  # its device nodes work; files go to /dev/shm, size-capped like /tmp
            "--size",
            str(SHM_BYTES),
            "--tmpfs",
            "/dev/shm",
            "--size",
            str(TMP_BYTES),
            "--tmpfs",
            "/tmp",
            "--size",
            str(self.limits.disk_bytes),
            "--tmpfs",
            WORK,
        ]
        for path in TOP_LIBRARIES:
            if os.path.islink(path):
                sandbox += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                sandbox += ["--ro-bind", path, path]
        for path in SYSTEM_LIBRARIES:
            sandbox += ["--ro-bind-try", path, path]
        sandbox += ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache"]
        for host, inside, writable in binds:
            sandbox += ["--bind" if writable else "--ro-bind", host, inside]
        sandbox += ["--chdir", WORK, "--remount-ro", "/"]
        python = self.interpreter.executable
        launch = [python, "-I", "-S", "-c", _LAUNCHER, str(jail.processes), python]
        return [*stage, *sandbox, "--", *launch, *arguments]

    def run(self, folder: Path, arguments: list[str], jail: Jail | None = None) -> Ran:
        """`python <arguments>` in the jail, `folder` its working directory; Ran(None, ...) at the wall limit."""
        if not self.available:
            raise RuntimeError(f"{UNAVAILABLE}: {self.availability.reason}")
        return self._jailed(folder, arguments, jail or self._check_jail())

    def _jailed(self, folder: Path, arguments: list[str], jail: Jail) -> Ran:
        """Under every limit; the process group dies at the wall limit, and the PID namespace with it. Output
        goes to a file, not a pipe, so RLIMIT_FSIZE bounds it and the worker never buffers more than the tail
        it keeps."""
        environment = {
            "PATH": f"{Path(self.interpreter.executable).parent}:{MINIMAL_PATH}",
            "HOME": WORK,
            "PYTHONDONTWRITEBYTECODE": "1",
            "LANG": "C.UTF-8",
            "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",  # the generated tests get pytest alone, not the worker's plugins
        }
        limits = self.limits
        cgroup = self.cgroups.make(RunLimits(limits.total_memory_bytes, jail.processes, limits.cpus))
        try:
            with tempfile.TemporaryFile() as output:
                process = subprocess.Popen(
                    self.command(folder, arguments, jail),
                    cwd="/",
                    env=environment,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=functools.partial(self._limit, cgroup, jail),  # set in the child before exec
                )
                returncode, killed = self._wait(process, cgroup, jail.wall_seconds)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)  # bwrap dies, its PID namespace with it
                process.wait()
                size = output.seek(0, os.SEEK_END)
                output.seek(max(0, size - jail.output_bytes))
                text = output.read().decode("utf-8", "replace")
            if cgroup is not None and (oom := cgroup.oom_kills()):
                megabytes = limits.total_memory_bytes // 2**20
                text = f"[sandbox: {oom} process(es) killed at the run's total memory limit ({megabytes} MB)]\n{text}"
        finally:
            if cgroup is not None:
                cgroup.remove()  # kills anything left (nothing should be: the PID namespace is gone)
        return Ran(returncode, text, killed)

    def _wait(
        self, process: subprocess.Popen[bytes], cgroup: RunCgroup | None, wall_seconds: float
    ) -> tuple[int | None, str | None]:
        """The run's exit status, or (None, which limit) when the worker ends it: the wall time, or the CPU time
        of all its processes together (its cgroup's, where it has one)."""
        limits = self.limits
        deadline = time.monotonic() + wall_seconds
        while True:
            try:
                return process.wait(timeout=max(0.0, min(POLL_SECONDS, deadline - time.monotonic()))), None
            except subprocess.TimeoutExpired:
                pass
            if cgroup is not None and cgroup.cpu_seconds() > limits.total_cpu_seconds:
                return None, f"the CPU time limit of the whole run ({limits.total_cpu_seconds:g} s)"
            if time.monotonic() >= deadline:
                return None, f"the wall time limit ({wall_seconds:g} s)"
            if (abandoned := _abandoned.get()) is not None and abandoned.is_set():
                return None, "the activity's cancellation"

    def verify(self, request: VerificationRequest) -> VerificationResult:
        files: dict[str, str] = {}
        for answer in request.code_answers:
            files |= code_files(answer)
        if not self.available:  # fail closed: nothing runs outside the jail
            return VerificationResult(
                round=request.round,
                passed=False,
                files=sorted(files),
                checks=[],
                network_isolated=False,
                sandbox_error=f"{UNAVAILABLE}: {self.availability.reason}",
                sandbox_available=False,
            )
        with self.folder_of(files) as folder:
            checks = self.checks(folder, files)
            passed = bool(files) and all(check.passed for check in checks)
            app = self.start_app(folder) if passed and ENTRY_POINT in files else None
        if app is None:  # nothing to start, or checks that failed already
            no_app = f"the code has no {ENTRY_POINT} to start: there is no page to show" if passed else None
            return VerificationResult(
                round=request.round,
                passed=passed,
                files=sorted(files),
                checks=checks,
                network_isolated=True,
                preview_unavailable=no_app,
            )
        return VerificationResult(
            round=request.round,
            passed=app.check.passed,
            files=sorted(files),
            checks=[*checks, app.check],
            network_isolated=True,
            app_started=app.app_started,
            preview=app.preview,
            preview_unavailable=app.preview_unavailable,
        )

    @contextlib.contextmanager
    def folder_of(self, files: dict[str, str]) -> Iterator[Path]:
        """A fresh run folder holding `files` (nobody's, as root: the jail's user), removed afterwards."""
        with _work_folder(self.as_root) as folder:
            for path, text in files.items():
                target = folder / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8")
            if self.as_root:
                _give_to_nobody(folder)
            yield folder

    def checks(self, folder: Path, files: dict[str, str]) -> list[SandboxCheck]:
        """Every file compiled or parsed, then the tests among them run with pytest."""
        checks = self._syntax(folder, sorted(files))
        tests = sorted(path for path in files if is_test_file(path))
        if tests:
            checks.append(self._pytest(folder, tests))
        return checks

    def start_app(self, folder: Path) -> Started:
        """The app in `folder` started by its entry point in a jail of its own, its main page fetched and, with a
        browser, shot (activities/sandbox_preview.py); the jail and everything in it gone on return."""
        limits = self.limits
        app_limits = {
            "RLIMIT_AS": limits.memory_bytes,
            "RLIMIT_CPU": limits.cpu_seconds,
            "RLIMIT_FSIZE": limits.file_bytes,
        }
        ran = self.run(folder, driver_arguments(self.browser, self.preview_limits, app_limits), self._app_jail())
        outcome = started(ran.output, ran.killed)
        return dataclasses.replace(
            outcome, check=outcome.check.model_copy(update={"output": trimmed(outcome.check.output)})
        )

    def _syntax(self, folder: Path, paths: list[str]) -> list[SandboxCheck]:
        checked = [path for path in paths if PurePosixPath(path).suffix in {".py", *_STRUCTURED}]
        if not checked:
            return []
        ran = self.run(folder, ["-I", "-c", _SYNTAX_CHECKER, *checked])
        try:
            verdicts = json.loads(ran.output.strip().splitlines()[-1])
        except (ValueError, IndexError):
            why = f"killed at {ran.killed}" if ran.returncode is None else f"exit status {ran.returncode}"
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
            verdict = f"killed at {ran.killed}\n"
        elif ran.returncode < 0:
            verdict = f"killed by signal {signal.Signals(-ran.returncode).name} (a CPU, memory or file limit)\n"
        elif ran.returncode >= 128 and ran.returncode - 128 in signal.valid_signals():
            # bwrap's init reports its child's death by a signal as 128 + the signal
            verdict = f"killed by signal {signal.Signals(ran.returncode - 128).name} (a CPU, memory or file limit)\n"
        else:
            verdict = ""
        return SandboxCheck(
            name="pytest " + " ".join(tests), passed=ran.returncode == 0, output=trimmed(verdict + ran.output)
        )


def _kind(path: str) -> str:
    return "compile" if path.endswith(".py") else "parse"


@contextlib.contextmanager
def _work_folder(as_root: bool) -> Iterator[Path]:
    """A fresh 0700 folder, the worker's (or, as root, nobody's: the jail's user), removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="verify-") as name:
        folder = Path(name)
        if as_root:
            os.chown(folder, NOBODY, NOBODY)
        yield folder


def _give_to_nobody(folder: Path) -> None:
    """As root the jail runs as nobody: the run's folder and files become its own (the folder stays 0700)."""
    for directory, names, files in os.walk(folder):
        for name in [*names, *files]:
            os.chown(os.path.join(directory, name), NOBODY, NOBODY, follow_symlinks=False)
    os.chown(folder, NOBODY, NOBODY)


@functools.lru_cache(maxsize=8)
def sandbox_availability(bwrap: str = "bwrap") -> Availability:
    """Whether this host can verify code (bwrap works, this interpreter has the tools), probed once per process."""
    return Sandbox(bwrap=bwrap).availability


class SandboxActivities:
    def __init__(
        self,
        limits: SandboxLimits | None = None,
        *,
        bwrap: str = "bwrap",
        previews: bool = True,
        browser: str = "/usr/bin/chromium",
    ) -> None:
        self.sandbox = Sandbox(limits, bwrap=bwrap, previews=previews, browser=browser)
        if self.sandbox.available:
            log.info("sandbox ready: generated code is verified in a bubblewrap jail (%s)", self.sandbox.bwrap)
            if isinstance(self.sandbox.browser, str):
                log.warning("no previews of started apps: %s", self.sandbox.browser)
        else:
            log.warning(
                "%s: %s. Prototypes complete 'not verified: sandbox unavailable'; no generated code is run",
                UNAVAILABLE,
                self.sandbox.availability.reason,
            )

    @activity.defn
    async def verify_code(self, request: VerificationRequest) -> VerificationResult:
        """The same answers give the same verdict, so a retried attempt is harmless. Cancelled (the workflow, or
        the worker stopping past its grace), the jailed run is killed too."""
        abandoned = threading.Event()
        _abandoned.set(abandoned)  # this task's context, copied into the verification's thread
        try:
            return await asyncio.to_thread(self.sandbox.verify, request)
        except asyncio.CancelledError:
            abandoned.set()
            raise
