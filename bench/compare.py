"""`python -m bench.compare`: the project's API against anchors (a bare FastAPI app on the same server flags, and
Fastify when node is present), same run, fixed rates.

The project and the bare app are started here with the production configuration (`api.server.api_command`: uvicorn,
uvloop + httptools when installed, API_WORKERS processes, no access log) on 127.0.0.1, and Fastify
(bench/fastify_anchor.py) in as many processes, answering the bare app's bytes on the same paths; the project
on a fresh PostgreSQL database with rate limits off and a Temporal dev server of its own, its signed-in user
owning FILES files. Each path is driven open-loop at each rate for a few seconds, on each server: requests are
sent on schedule whatever the answers do, and latency counts from the scheduled send time (no coordinated
omission); errors are split into 503s (shed by API_MAX_CONCURRENCY or the pool) and the rest (other statuses,
timeouts, refused connections). Then: workflow starts through the API against a raw temporalio client
(bench/starts.py), and an overload at twice the highest rate /auth/me held, with the time until the API
answers normally again and the servers' memory before and after. `--only` runs some of these parts (paths,
starts, overload). Prints figures; asserts nothing. Everything stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg

from api.server import api_command
from bench import fastify_anchor, wire
from bench.starts import compare_starts
from devstack.supervisor import temporal_command
from settings import Settings

PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
PATHS = ("/health", "/auth/me", "/api/files", "/api/payments/catalogue")
FILES = 10  # the bench user's files: GET /api/files lists them, each with a signed download link
CONNECTIONS = 256
TIMEOUT_SECONDS = 5.0
OVERLOAD_SECONDS = 10.0
NORMAL_MS = 50.0  # "answers normally": a 200 within this, three probes in a row
RECOVERY_LIMIT_SECONDS = 120.0
PARTS = ("paths", "starts", "overload")


def seed_files(database: psycopg.Connection[tuple[object, ...]], user_id: str, count: int) -> None:
    """Rows only (no objects, no retention workflows): what GET /api/files reads and signs a link for."""
    for index in range(count):
        file_id = uuid.uuid4()
        database.execute(
            "INSERT INTO files (id, user_id, storage_key, original_name, content_type, size_bytes, sha256,"
            " created_at, expires_at) VALUES (%s, %s, %s, %s, 'text/plain', 1024, %s, now(), now() + interval '1 day')",
            (file_id, user_id, f"uploads/{file_id}", f"notes-{index}.txt", "0" * 64),
        )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Result:
    sent: int
    ok: int
    shed: int
    other: int
    p50_ms: float
    p99_ms: float
    seconds: float
    cpu_seconds: float = float("nan")  # the server's processes' CPU while the measure ran
    generator_seconds: float = float("nan")  # this process's, sending and reading

    @property
    def cpu_ms_per_request(self) -> float:
        """CPU per answered request (200 or 503), in ms: what each one cost the server, whatever the rate."""
        return self.cpu_seconds * 1000 / (self.ok + self.shed) if self.ok + self.shed else float("nan")

    @property
    def ok_per_second(self) -> float:
        return self.ok / self.seconds

    @property
    def generator_ms_per_request(self) -> float:
        return self.generator_seconds * 1000 / self.sent if self.sent else float("nan")

    @property
    def errors(self) -> int:
        return self.shed + self.other


def tree(pid: int) -> list[int]:
    """A server's processes: uvicorn's supervisor (or node's primary), then its workers."""
    pids, found = [pid], []
    while pids:
        current = pids.pop(0)
        with suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                pids.extend(int(child) for child in (task / "children").read_text().split())
            found.append(current)
    return found


def rss_mb(pid: int) -> list[float]:
    """RSS of each process of a server's tree, in MB."""
    found = []
    for current in tree(pid):
        with suppress(OSError):
            status = Path(f"/proc/{current}/status").read_text()
            found.append(int(status.split("VmRSS:")[1].split()[0]) / 1024)
    return found


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User and system CPU spent so far by a server's processes (all threads), from /proc."""
    total = 0
    for current in tree(pid):
        with suppress(OSError):
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def memory(pid: int) -> str:
    sizes = rss_mb(pid)
    workers = ", ".join(f"{size:.0f}" for size in sizes[1:]) or "none"
    return f"supervisor {sizes[0]:.0f} MB, workers {workers} MB" if sizes else "gone"


async def drive(
    port: int, path: str, headers: dict[str, str], rate: int, seconds: float, server: int | None = None
) -> Result:
    """Open loop on CONNECTIONS connections opened beforehand: request i is due at start + i / rate; its
    latency runs from then, not from when it left.
    With the server's pid, also the CPU its processes spent meanwhile. Times are perf_counter's: uvloop's
    loop.time() counts whole milliseconds."""
    request = wire.request_bytes("GET", path, headers)
    pool = wire.Pool(port, CONNECTIONS)
    await pool.connect_all()
    latencies: list[float] = []
    shed = other = 0
    total = int(rate * seconds)
    start = time.perf_counter() + 0.05
    cpu_before = cpu_seconds(server) if server else float("nan")
    generator_before = time.process_time()

    async def scheduled(due: float) -> None:
        nonlocal shed, other
        try:
            status, _ = await asyncio.wait_for(pool.send(request), TIMEOUT_SECONDS)
        except Exception:
            status = 0
        if status == 200:
            latencies.append(time.perf_counter() - due)
        elif status == 503:
            shed += 1
        else:
            other += 1

    tasks = []
    for i in range(total):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(scheduled(due)))
    await asyncio.gather(*tasks)
    cpu = cpu_seconds(server) - cpu_before if server else float("nan")
    generator = time.process_time() - generator_before
    pool.close()
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else float("nan")

    return Result(
        sent=total,
        ok=len(latencies),
        shed=shed,
        other=other,
        p50_ms=pct(0.50),
        p99_ms=pct(0.99),
        seconds=seconds,
        cpu_seconds=cpu,
        generator_seconds=generator,
    )


async def until_normal(port: int, path: str, headers: dict[str, str], since: float) -> float:
    """Seconds from `since` (the loop time the overload's last request was due) to the first of three probes in a
    row answered 200 within NORMAL_MS."""
    pool, probe = wire.Pool(port, 1), wire.request_bytes("GET", path, headers)
    try:
        streak: list[float] = []
        while time.perf_counter() - since < RECOVERY_LIMIT_SECONDS:
            sent = time.perf_counter()
            with suppress(OSError, asyncio.IncompleteReadError, asyncio.TimeoutError):
                status, _ = await asyncio.wait_for(pool.send(probe), TIMEOUT_SECONDS)
                if status == 200 and (time.perf_counter() - sent) * 1000 < NORMAL_MS:
                    streak.append(sent)
                    if len(streak) == 3:
                        return max(0.0, streak[0] - since)
                    continue
            streak.clear()
            await asyncio.sleep(0.05)
        return float("inf")
    finally:
        pool.close()


async def overload(port: int, path: str, headers: dict[str, str], rate: int) -> tuple[Result, float]:
    """`rate` for OVERLOAD_SECONDS, then probe until the API answers normally; the probes start when the last
    overload request is due, while the server may still be working through what it took on."""
    ends = time.perf_counter() + 0.05 + OVERLOAD_SECONDS
    burst = asyncio.create_task(drive(port, path, headers, rate, OVERLOAD_SECONDS))
    await asyncio.sleep(max(0.0, ends - time.perf_counter()))
    recovery = await until_normal(port, path, headers, ends)
    return await burst, recovery


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, process_group=0)


def stop(process: subprocess.Popen[bytes]) -> None:
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def wait_ready(url: str, process: subprocess.Popen[bytes], seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{url}: the server exited with {process.returncode}")
        with suppress(httpx.TransportError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise SystemExit(f"{url} did not answer within {seconds:.0f} s")


def floor_memory(project: list[str], env: dict[str, str], folder: Path) -> str:
    """RSS at rest of bench/floor_app.py on the project's server flags: every module an API process has loaded
    but the project's own, the same database pool and a Temporal connection (then it stops: it takes no load)."""
    listed = subprocess.run([sys.executable, "-m", "bench.floor_app"], env=env, capture_output=True, check=True)
    modules = listed.stdout.decode().strip().splitlines()[-1]
    command = [part.replace("api.app:serve", "bench.floor_app:create_app") for part in project]
    port = free_port()
    command[command.index("--port") + 1] = str(port)
    ready = folder / "floor-ready"
    ready.mkdir()
    process = start(
        command, {**env, "BENCH_FLOOR_MODULES": modules, "BENCH_FLOOR_READY": str(ready)}, folder / "floor.log"
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}/health", process)
        deadline = time.monotonic() + 60
        while len(list(ready.iterdir())) < int(env["API_WORKERS"]):  # every worker connected, not just the first
            if time.monotonic() > deadline or process.poll() is not None:
                raise SystemExit("the memory anchor's workers did not all start")
            time.sleep(0.1)
        skipped = httpx.get(f"http://127.0.0.1:{port}/health").json()["modules_not_imported"]
        return f"{memory(process.pid)} ({len(json.loads(modules))} modules, {skipped} only importable by their parent)"
    finally:
        stop(process)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="200,500,1000", help="requests per second, comma-separated")
    parser.add_argument("--seconds", type=float, default=10.0, help="per path and rate")
    parser.add_argument("--workers", type=int, default=2, help="API_WORKERS for every server")
    parser.add_argument("--only", default=",".join(PARTS), help=f"comma-separated, of: {', '.join(PARTS)}")
    parser.add_argument("--paths", default=",".join(PATHS), help="the paths part's paths, comma-separated")
    args = parser.parse_args()
    rates = [int(rate) for rate in args.rates.split(",")]
    parts = set(args.only.split(","))
    paths = args.paths.split(",")
    if set(paths) - set(PATHS):
        unknown = ", ".join(sorted(set(paths) - set(PATHS)))
        parser.error(f"--paths: unknown path(s) {unknown}; known: {', '.join(PATHS)}")
    if parts - set(PARTS):
        parser.error(f"--only: unknown part(s) {', '.join(sorted(parts - set(PARTS)))}; known: {', '.join(PARTS)}")

    name = f"statex_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    folder = Path(tempfile.mkdtemp(prefix="statex-bench-"))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        project_port, bare_port, temporal_port = free_port(), free_port(), free_port()
        env = {
            **os.environ,
            "ENVIRONMENT": "production",
            "JWT_SECRET": secrets.token_urlsafe(48),
            "PAYLOAD_KEYS": f"bench:{base64.b64encode(secrets.token_bytes(32)).decode()}",
            "DATABASE_URL": f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}".replace(
                "postgresql://", "postgresql+psycopg://"
            ),
            "DATA_DIR": str(folder),
            "RATE_LIMIT_ENABLED": "false",
            "REDIS_URL": "",
            "SENTRY_DSN": "",
            "BCRYPT_ROUNDS": "4",
            "API_WORKERS": str(args.workers),
            "API_HOST": "127.0.0.1",
            "TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}",
            "TEMPORAL_UI_PORT": str(free_port()),
            "PYTHONPATH": os.pathsep.join(filter(None, (str(Path.cwd()), os.environ.get("PYTHONPATH")))),
        }
        settings = Settings(
            _env_file=None,
            **{
                k.lower(): v
                for k, v in env.items()
                if k
                in {  # type: ignore[arg-type]
                    "ENVIRONMENT",
                    "JWT_SECRET",
                    "PAYLOAD_KEYS",
                    "DATA_DIR",
                    "API_WORKERS",
                    "API_HOST",
                    "TEMPORAL_ADDRESS",
                    "TEMPORAL_UI_PORT",
                }
            },
        )
        processes.append(start(temporal_command(settings), env, folder / "temporal.log"))
        # As `statex api` does: migrate once, then serve with processes that do not migrate (nor load Alembic).
        subprocess.run([sys.executable, "-m", "cli", "migrate"], env=env, check=True, capture_output=True)
        env["RUN_MIGRATIONS_ON_START"] = "false"
        project = api_command(settings.model_copy(update={"api_port": project_port}))
        server = start(project, env, folder / "project.log")
        processes.append(server)
        base = f"http://127.0.0.1:{project_port}"
        wait_ready(f"{base}/health", server)  # /ready also wants a worker: none runs here

        email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
        httpx.post(f"{base}/auth/register", json={"email": email, "password": "benchmark password"}).raise_for_status()
        login = httpx.post(f"{base}/auth/login", json={"email": email, "password": "benchmark password"})
        headers = {"Authorization": f"Bearer {login.raise_for_status().json()['access_token']}"}
        catalogue = httpx.get(f"{base}/api/payments/catalogue").raise_for_status().text
        user_id = httpx.get(f"{base}/auth/me", headers=headers).raise_for_status().json()["id"]
        with psycopg.connect(f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}", autocommit=True) as database:
            seed_files(database, user_id, FILES)

        bare = [part.replace("api.app:serve", "bench.bare_app:create_app") for part in project]
        bare[bare.index("--port") + 1] = str(bare_port)
        processes.append(start(bare, {**env, "BENCH_CATALOGUE_JSON": catalogue}, folder / "bare.log"))
        wait_ready(f"http://127.0.0.1:{bare_port}/health", processes[-1])
        anchors = {"bare": (bare_port, processes[-1])}
        bodies = {path: httpx.get(f"http://127.0.0.1:{bare_port}{path}").content.decode() for path in PATHS}
        skipped = fastify_anchor.prepare()
        if skipped:
            print(f"Fastify anchor skipped: {skipped}")
        else:
            fastify_port = free_port()
            extra = fastify_anchor.environment(fastify_port, settings.effective_api_workers, bodies)
            processes.append(start(fastify_anchor.command(), {**env, **extra}, folder / "fastify.log"))
            wait_ready(f"http://127.0.0.1:{fastify_port}/health", processes[-1])
            for path, body in bodies.items():
                if httpx.get(f"http://127.0.0.1:{fastify_port}{path}").content != body.encode():
                    raise SystemExit(f"Fastify answers {path} with other bytes than the bare app")
            anchors["fastify"] = (fastify_port, processes[-1])

        print(f"server: {' '.join(project[2:])}; {os.cpu_count()} CPUs; {args.seconds:.0f} s per measure")
        at_rest = "; ".join(f"{name} {memory(process.pid)}" for name, (_, process) in anchors.items())
        print(f"RSS at rest: project {memory(server.pid)}; {at_rest}")
        print(f"  the project's libraries alone: {floor_memory(project, env, folder)}", flush=True)
        held: dict[str, list[int]] = {}
        if "paths" in parts:
            print(
                f"{'path':<26}{'rate':>6}  {'project ok/s':>12} {'p50':>8} {'p99':>8} {'503':>5} {'other':>5}"
                f" {'cpu/req':>8} {'gen/req':>8}"
                + "".join(
                    f"  {name + ' ok/s':>12} {'p50':>8} {'p99':>8} {'err':>5} {'cpu/req':>8} {'p99 ratio':>9}"
                    f" {'cpu ratio':>9}"
                    for name in anchors
                )
            )
            for path in paths:
                for rate in rates:
                    mine = wire.run(drive(project_port, path, headers, rate, args.seconds, server.pid))
                    if mine.errors == 0:
                        held.setdefault(path, []).append(rate)
                    row = (
                        f"{path:<26}{rate:>6}  {mine.ok_per_second:>12.0f} {mine.p50_ms:>7.1f}ms {mine.p99_ms:>7.1f}ms "
                        f"{mine.shed:>5} {mine.other:>5} {mine.cpu_ms_per_request:>6.2f}ms "
                        f"{mine.generator_ms_per_request:>6.2f}ms"
                    )
                    for port, process in anchors.values():
                        anchor = wire.run(drive(port, path, headers, rate, args.seconds, process.pid))
                        ratio = mine.p99_ms / anchor.p99_ms if anchor.p99_ms else float("nan")
                        row += (
                            f"  {anchor.ok_per_second:>12.0f} {anchor.p50_ms:>7.1f}ms {anchor.p99_ms:>7.1f}ms "
                            f"{anchor.errors:>5} {anchor.cpu_ms_per_request:>6.2f}ms {ratio:>8.2f}x "
                            f"{mine.cpu_ms_per_request / anchor.cpu_ms_per_request:>8.2f}x"
                        )
                    print(row, flush=True)

        if "starts" in parts:
            compare_starts(project_port, settings, env["DATABASE_URL"].replace("+psycopg", "", 1))

        if "overload" not in parts:
            return
        sustainable = max(held.get("/auth/me", [rates[0]]))
        rest = memory(server.pid)
        burst, recovery = wire.run(overload(project_port, "/auth/me", headers, 2 * sustainable))
        print(
            f"\noverload: /auth/me at {2 * sustainable} req/s (2x the highest rate held without errors) for "
            f"{OVERLOAD_SECONDS:.0f} s: {burst.ok} ok (p50 {burst.p50_ms:.0f} ms, p99 {burst.p99_ms:.0f} ms), "
            f"{burst.shed} shed with 503, {burst.other} other errors\n"
            f"  answering normally again (3 probes in a row, 200 within {NORMAL_MS:.0f} ms) {recovery:.2f} s after "
            f"the overload's last request was due\n  RSS before: {rest}\n  RSS after:  {memory(server.pid)}",
            flush=True,
        )
    finally:
        for process in reversed(processes):
            stop(process)
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if sys.exc_info()[1] is None:  # the servers' logs and data are only worth keeping when a run failed
            shutil.rmtree(folder, ignore_errors=True)
        else:
            print(f"the servers' logs are kept in {folder}", file=sys.stderr)


if __name__ == "__main__":
    main()
