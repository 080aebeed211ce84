"""A cgroup per sandbox run: limits on the whole run (memory, processes, CPU rate) and its CPU time, whatever
processes it starts. This module only creates the cgroups and writes the kernel's documented limit files
(Documentation/admin-guide/cgroup-v2.rst; cgroup v1's memory, pids, cpu and cpuacct controllers where a host still
mounts those); the isolation itself is bubblewrap's.

Where the worker may make cgroups:
- cgroup v2: the worker's own cgroup (from /proc/self/cgroup) when it may write there (root on a host without
  systemd, a systemd service with `Delegate=yes`, a container given a writable cgroup namespace). A cgroup with
  processes in it may not hand controllers to children, so when the worker is alone in its cgroup it first moves
  itself into a leaf `statex-worker` (what systemd's delegation documentation asks of a delegated service);
- cgroup v1 (a hybrid host): a child of the worker's cgroup in each of the memory, pids, cpu and cpuacct
  hierarchies, where it may make one (as root).
Elsewhere (an unprivileged container: Docker mounts /sys/fs/cgroup read-only) there are no per-run cgroups: the
sandbox still runs, with per-process limits, the per-jail process limit, the tmpfs sizes and the wall time limit;
the container's own limits (docker-compose.yml's worker) bound all runs together. `Cgroups.find` says which.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
PREFIX = "statex-run-"
LEAF = "statex-worker"
CONTROLLERS = ("memory", "pids", "cpu")
V1_CONTROLLERS = ("memory", "pids", "cpu", "cpuacct")
PERIOD_US = 100_000
STALE_SECONDS = 600
EXTRA_PROCESSES = 8
"""pids.max over the run's own limit: the worker's bwrap, setpriv and bwrap's init run in the cgroup too."""


@dataclass(frozen=True)
class RunLimits:
    memory_bytes: int
    processes: int
    cpus: float


@dataclass
class RunCgroup:
    """One run's cgroup(s): `procs` the files a process writes "0" to, to enter (every hierarchy's, on v1)."""

    version: int
    folders: list[Path]
    procs: list[str] = field(default_factory=list)

    def enter(self) -> None:
        """Moves the calling process in: called in the child between fork and exec (plain system calls only)."""
        for path in self.procs:
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, b"0")
            finally:
                os.close(fd)

    def cpu_seconds(self) -> float:
        """CPU time used by every process of the run so far (those gone included)."""
        with contextlib.suppress(OSError, ValueError):
            if self.version == 2:
                for line in (self.folders[0] / "cpu.stat").read_text().splitlines():
                    if line.startswith("usage_usec "):
                        return int(line.split()[1]) / 1e6
            else:
                return int((self._v1("cpuacct") / "cpuacct.usage").read_text()) / 1e9
        return 0.0

    def oom_kills(self) -> int:
        """Processes of the run the kernel killed at its memory limit."""
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        folder = self.folders[0] if self.version == 2 else self._v1("memory")
        with contextlib.suppress(OSError, ValueError):
            for line in (folder / name).read_text().splitlines():
                if line.startswith("oom_kill "):
                    return int(line.split()[1])
        return 0

    def _v1(self, controller: str) -> Path:
        return self.folders[V1_CONTROLLERS.index(controller)]

    def remove(self, within: float = 10.0) -> None:
        """Kills whatever is left in the run's cgroup, then removes it (once empty: the kernel refuses before)."""
        deadline = time.monotonic() + within
        for folder in self.folders:
            while True:
                if self.version == 2:
                    with contextlib.suppress(OSError):
                        (folder / "cgroup.kill").write_text("1")
                else:
                    with contextlib.suppress(OSError, ValueError):
                        for pid in (folder / "cgroup.procs").read_text().split():
                            with contextlib.suppress(ProcessLookupError):
                                os.kill(int(pid), signal.SIGKILL)
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as error:
                    if error.errno != errno.EBUSY or time.monotonic() > deadline:
                        break
                    time.sleep(0.02)


@dataclass(frozen=True)
class Cgroups:
    """Where runs' cgroups are made (`parents`: one folder on v2, one per controller on v1), or why there are
    none (`reason`)."""

    version: int | None
    parents: tuple[Path, ...] = ()
    reason: str | None = None

    @property
    def available(self) -> bool:
        return self.version is not None

    @classmethod
    def find(cls, root: Path = ROOT) -> Cgroups:
        try:
            memberships = Path("/proc/self/cgroup").read_text().splitlines()
        except OSError as error:
            return cls(None, reason=f"no /proc/self/cgroup ({error})")
        if (root / "cgroup.controllers").exists():
            return cls._v2(root, memberships)
        if (root / "memory").is_dir():
            return cls._v1(root, memberships)
        return cls(None, reason=f"no cgroup file system at {root}")

    @classmethod
    def _v2(cls, root: Path, memberships: list[str]) -> Cgroups:
        [own] = [line.split(":", 2)[2] for line in memberships if line.startswith("0::")] or ["/"]
        folder = root / own.lstrip("/")
        if folder.name == LEAF:  # moved there by an earlier probe of this process
            folder = folder.parent
        try:
            missing = set(CONTROLLERS) - set((folder / "cgroup.controllers").read_text().split())
            if missing:
                return cls(None, reason=f"cgroup v2 {folder} lacks the {', '.join(sorted(missing))} controller(s)")
            enabled = set((folder / "cgroup.subtree_control").read_text().split())
            if not set(CONTROLLERS) <= enabled:
                procs = (folder / "cgroup.procs").read_text().split()
                if procs and procs != [str(os.getpid())]:
                    return cls(None, reason=f"cgroup v2 {folder} holds other processes than the worker")
                if procs:
                    leaf = folder / LEAF
                    leaf.mkdir(exist_ok=True)
                    (leaf / "cgroup.procs").write_text("0")
                (folder / "cgroup.subtree_control").write_text(" ".join(f"+{name}" for name in CONTROLLERS))
            _sweep([folder])
            probe = _made(folder)
            probe.rmdir()
        except OSError as error:
            return cls(None, reason=f"the worker may not make cgroups under {folder} ({error.strerror})")
        return cls(2, (folder,))

    @classmethod
    def _v1(cls, root: Path, memberships: list[str]) -> Cgroups:
        parents = []
        for controller in V1_CONTROLLERS:
            found = [line.split(":", 2) for line in memberships]
            paths = [path for _, names, path in found if controller in names.split(",")]
            mount = root / controller
            if not paths or not mount.is_dir():
                return cls(None, reason=f"cgroup v1 without the {controller} controller")
            parents.append(mount / paths[0].lstrip("/"))
        try:
            _sweep(parents)
            for parent in parents:
                _made(parent).rmdir()
        except OSError as error:
            return cls(None, reason=f"the worker may not make cgroups (v1) under {parents[0]} ({error.strerror})")
        return cls(1, tuple(parents))

    def make(self, limits: RunLimits) -> RunCgroup | None:
        """A new run's cgroup with its limits, or None where there are no cgroups."""
        if self.version is None:
            return None
        name = f"{PREFIX}{uuid.uuid4().hex}"
        folders = [parent / name for parent in self.parents]
        run = RunCgroup(self.version, folders, [str(folder / "cgroup.procs") for folder in folders])
        try:
            for folder in folders:
                folder.mkdir()
            quota = max(1000, int(limits.cpus * PERIOD_US))
            pids = str(limits.processes + EXTRA_PROCESSES)
            if self.version == 2:
                [folder] = folders
                _write(folder / "memory.max", str(limits.memory_bytes))
                _write(folder / "memory.swap.max", "0", optional=True)
                _write(folder / "pids.max", pids)
                _write(folder / "cpu.max", f"{quota} {PERIOD_US}")
            else:
                memory, pids_folder, cpu, _ = folders
                _write(memory / "memory.limit_in_bytes", str(limits.memory_bytes))
                _write(memory / "memory.memsw.limit_in_bytes", str(limits.memory_bytes), optional=True)
                _write(pids_folder / "pids.max", pids)
                _write(cpu / "cpu.cfs_period_us", str(PERIOD_US))
                _write(cpu / "cpu.cfs_quota_us", str(quota))
        except OSError:
            run.remove(within=1)
            raise
        return run


def _write(path: Path, value: str, *, optional: bool = False) -> None:
    try:
        path.write_text(value)
    except FileNotFoundError:
        if not optional:
            raise


def _made(parent: Path) -> Path:
    probe = parent / f"{PREFIX}probe-{uuid.uuid4().hex}"
    probe.mkdir()
    return probe


def _sweep(parents: list[Path]) -> None:
    """Removes runs' cgroups left by a worker that was killed (empty ones: its jails died with it; the kernel
    refuses to remove one with a process in it), old enough not to be another sandbox's run about to start."""
    for parent in parents:
        for stale in parent.glob(f"{PREFIX}*"):
            with contextlib.suppress(OSError):
                if time.time() - stale.stat().st_mtime > STALE_SECONDS:
                    stale.rmdir()
