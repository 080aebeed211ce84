"""`python -m bench.scale`: Statex past one process, simulated on one machine.

One Temporal dev server, one PostgreSQL database, the local Stripe emulator, API processes on ports of their
own and worker processes (three by default), each configured by environment as a deployment would be, and
supervised by `statex run`'s own code (devstack/supervisor.py): a worker that dies is started again after a
short backoff. Two runs:

- `chaos` (the default): checkouts (paid or declined at the emulator, as a customer's browser would) and
  prototypes (the offline tier: no AI keys), spread over the API processes, while a worker chosen at random is
  killed with SIGKILL every few seconds and comes back. Then it checks that nothing was lost (every checkout
  ended as its card said, every prototype COMPLETED with its zip) and nothing was done twice (one payment row
  per checkout, one charge per payment at the emulator, one receipt per payment in the outbox, one zip and one
  "ready" email per prototype). Exit 1 and each problem named, or exit 0.
- `throughput`: the same stack started afresh with 1, 2 and 3 workers and no kills, the same I/O-bound workload
  on each (paid checkouts: the worker's activities call the emulator over HTTP, write rows, write the receipt;
  contact messages: two emails to the outbox and a row; optionally prototypes, whose sandbox is CPU-bound), the
  completed workflows per second of each, and the CPU each part of the stack spent per completed workflow.

Everything listens on 127.0.0.1, is bounded in count and time, and stops by itself; the database (named
`scale_…`) and the temporary folder are removed after a run that passed (kept, with every process's log, after
one that did not).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import os
import random
import resource
import secrets
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import psycopg

from api.server import api_command
from bench.compare import CLOCK_TICKS, tree
from devstack import local_stripe
from devstack.supervisor import (
    Child,
    RestartPolicy,
    Stack,
    answers_ok,
    temporal_answers,
    temporal_command,
    wait_until,
)
from models.db import migrate_database
from settings import Settings

PORT_BASE = 18400
"""The bench's ports start here. Free ports picked one by one can be taken between the pick and the bind (the
Temporal dev server binds random ports of its own while the others start); ports below the kernel's ephemeral
range (32768 and up) are never handed out that way."""
PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
START_SECONDS = 180.0
"""Every process up and /ready on a busy 2-core machine: three workers building their workflow sandboxes at once
took 50-60 s there (load average 17)."""
SETTLE_SECONDS = 900.0
"""How long one checkout or prototype may take to end once started: generous, so that only a lost one fails the
run. A killed worker's activity runs again once its heartbeat or start-to-close timeout has passed
(workflows/timeouts.py), and kills faster than a worker restarts leave none polling for a while."""
ACCEPT_SECONDS = 600.0
"""How long a client keeps sending one start again (same Idempotency-Key) while the API answers 5xx or nothing:
long, since a client that gives up is not what is being tested."""
POLL_SECONDS = 0.25
EMAIL_SECONDS = 120.0
"""After the last checkout and prototype ended, how long their emails may take to reach the outbox."""
DATABASE_POOL_SIZE = 4
"""Per process: 2 APIs and 3 workers hold at most 20 connections of PostgreSQL's 100, shared with other work."""
PASSWORD = "scale bench password"
IDEA = "A to-do list where each task has a title and can be marked done."
WORKER_RESTARTS = RestartPolicy(max_crashes=1_000_000, backoff_seconds=0.5, max_backoff_seconds=0.5)
"""Killed on purpose, again and again: never a crash loop here, and back after half a second."""


class RunFailed(RuntimeError):
    """A start or a wait did not end in time, or a part of the stack exited; the message says which."""


# --- the stack ----------------------------------------------------------------------------------------


def port_source(base: int | None) -> Iterator[int]:
    """Consecutive ports from `base`, or free ones the kernel picks (which another process may take before the
    bind: prefer a base)."""
    if base is not None:
        yield from itertools.count(base)
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            yield int(probe.getsockname()[1])


@dataclass
class Scale:
    """The running stack: its settings (as its processes read them from the environment), the API's URLs, the
    supervisor holding every process."""

    settings: Settings
    database_url: str
    """Plain psycopg URL of the run's database, for the checks."""
    folder: Path
    api_urls: list[str]
    stack: Stack
    workers: list[Child]
    kills: int = 0

    def api(self, index: int) -> str:
        return self.api_urls[index % len(self.api_urls)]

    def ensure_running(self) -> None:
        if self.stack.ended.done():
            raise RunFailed(f"the stack stopped: {self.stack.ended.result() or 'a stop signal'}")

    def kill_a_worker(self, chooser: random.Random) -> None:
        """SIGKILL to one worker's process group: no graceful shutdown, its running tasks lost mid-way."""
        alive = [child for child in self.workers if child.process.returncode is None]
        if alive:
            child = chooser.choice(alive)
            with suppress(ProcessLookupError):
                os.killpg(child.process.pid, signal.SIGKILL)
                self.kills += 1


@asynccontextmanager
async def running(
    *, apis: int, workers: int, port_base: int | None, keep: bool = False, pg_admin_url: str = PG_ADMIN_URL
) -> AsyncIterator[Scale]:
    """The stack up and every API process ready; stopped, its database dropped and its folder deleted after
    (the folder kept, its logs named, when the body raised or `keep`)."""
    ports = port_source(port_base)
    name = f"scale_{uuid.uuid4().hex[:12]}"
    server = pg_admin_url.rsplit("/", 1)[0]
    async with await psycopg.AsyncConnection.connect(pg_admin_url, autocommit=True) as admin:
        await admin.execute(f'CREATE DATABASE "{name}"')
    folder = Path(tempfile.mkdtemp(prefix="statex-scale-"))
    env = {
        **os.environ,
        "ENVIRONMENT": "production",
        "JWT_SECRET": secrets.token_urlsafe(48),
        "PAYLOAD_KEYS": f"scale:{base64.b64encode(secrets.token_bytes(32)).decode()}",
        "DATABASE_URL": f"{server}/{name}",
        "DATABASE_POOL_SIZE": str(DATABASE_POOL_SIZE),
        "DATA_DIR": str(folder / "data"),
        "RATE_LIMIT_ENABLED": "false",
        "REDIS_URL": "",
        "SENTRY_DSN": "",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "",
        "BCRYPT_ROUNDS": "4",
        "API_WORKERS": "1",
        "API_HOST": "127.0.0.1",
        "API_PORT": str(next(ports)),
        "TEMPORAL_ADDRESS": f"127.0.0.1:{next(ports)}",
        "TEMPORAL_UI_PORT": str(next(ports)),
        "TEMPORAL_HTTP_PORT": str(next(ports)),
        "TEMPORAL_METRICS_PORT": str(next(ports)),
        "LOCAL_STRIPE_PORT": str(next(ports)),
        "RUN_MIGRATIONS_ON_START": "false",
        "PYTHONPATH": os.pathsep.join(filter(None, (str(Path.cwd()), os.environ.get("PYTHONPATH")))),
    }
    for key in [key for key in env if key.startswith(("STRIPE_", "OPENAI_", "AZURE_OPENAI_", "OLLAMA_"))]:
        del env[key]  # the emulator's Stripe, and the offline AI tier: nothing leaves the machine
    settings = Settings(_env_file=None, **{key.lower(): value for key, value in env.items() if key in _SETTINGS})  # type: ignore[arg-type]
    env |= local_stripe.environment(settings)
    stack = Stack()

    async def up(answers: Callable[[], Awaitable[bool]], what: str) -> None:
        async def answered() -> bool:
            if stack.ended.done():
                raise RunFailed(f"{what} did not start: {stack.ended.result()} (its log is in {logs})")
            return await answers()

        await wait_until(answered, START_SECONDS, what)

    logs = folder / "logs"
    failed = True
    try:
        settings.data_dir.mkdir(mode=0o700)
        logs.mkdir()
        await migrate_database(settings)  # once, before any process starts: as `statex run` and the Job do
        await stack.spawn("temporal", temporal_command(settings), env, output=logs / "temporal.log")
        await up(lambda: temporal_answers(settings), "Temporal")
        stripe = [sys.executable, "-m", "devstack.local_stripe", "--port", str(settings.local_stripe_port)]
        stripe += ["--state", str(folder / "localstripe.pickle")]
        await stack.spawn("stripe", stripe, env, output=logs / "stripe.log")
        await up(lambda: local_stripe.answers(settings), "the Stripe emulator")
        await local_stripe.register_webhook(settings, local_stripe.webhook_url(settings))
        children = []
        for index in range(workers):
            metrics = {"WORKER_METRICS_PORT": str(next(ports)), "WORKER_SDK_METRICS_PORT": str(next(ports))}
            children.append(
                await stack.spawn(
                    f"worker-{index}",
                    [sys.executable, "-m", "worker"],
                    env | metrics,
                    restart=WORKER_RESTARTS,
                    output=logs / f"worker-{index}.log",
                )
            )
        urls = []
        for index in range(apis):
            port = settings.api_port if index == 0 else next(ports)
            command = api_command(settings.model_copy(update={"api_port": port}))
            await stack.spawn(f"api-{index}", command, env | {"API_PORT": str(port)}, output=logs / f"api-{index}.log")
            urls.append(f"http://127.0.0.1:{port}")
        async with httpx.AsyncClient(timeout=5) as http:
            for url in urls:
                await up(partial(answers_ok, http, f"{url}/ready"), f"{url}/ready")
        scale = Scale(settings, f"{server}/{name}", folder, urls, stack, children)
        scale.ensure_running()
        yield scale
        failed = False
    finally:
        stack.end()
        await stack.stop()
        async with await psycopg.AsyncConnection.connect(pg_admin_url, autocommit=True) as admin:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if failed or keep:
            print(f"the processes' logs and the data folder are kept in {folder}", file=sys.stderr, flush=True)
        else:
            shutil.rmtree(folder, ignore_errors=True)


_SETTINGS = {
    "ENVIRONMENT",
    "API_WORKERS",
    "JWT_SECRET",
    "PAYLOAD_KEYS",
    "DATABASE_URL",
    "DATA_DIR",
    "API_HOST",
    "API_PORT",
    "TEMPORAL_ADDRESS",
    "TEMPORAL_UI_PORT",
    "TEMPORAL_HTTP_PORT",
    "TEMPORAL_METRICS_PORT",
    "LOCAL_STRIPE_PORT",
}
"""What the bench itself reads from the processes' environment: the commands it builds and where to look."""


# --- the clients --------------------------------------------------------------------------------------


@dataclass
class Tally:
    """What the clients saw on the way: answers that made them retry a start."""

    retried: Counter[str] = field(default_factory=Counter)


async def until(condition: Callable[[], Awaitable[bool]], seconds: float, what: str, scale: Scale) -> None:
    deadline = time.monotonic() + seconds
    while not await condition():
        scale.ensure_running()
        if time.monotonic() > deadline:
            raise RunFailed(f"no {what} within {seconds:.0f} s")
        await asyncio.sleep(POLL_SECONDS)


async def accepted(
    http: httpx.AsyncClient, url: str, headers: dict[str, str], body: dict[str, Any], tally: Tally, scale: Scale
) -> dict[str, Any]:
    """POST a start as a careful client does: on a 5xx or no answer, the same request with the same
    Idempotency-Key again, until a 2xx (the start's resource) or ACCEPT_SECONDS."""
    answer: dict[str, Any] = {}

    async def taken() -> bool:
        try:
            response = await http.post(url, headers=headers, json=body)
        except httpx.TransportError as err:
            tally.retried[type(err).__name__] += 1
            return False
        if response.status_code >= 500:
            tally.retried[str(response.status_code)] += 1
            return False
        if not response.is_success:
            raise RunFailed(f"POST {url} answered {response.status_code}: {response.text[:300]}")
        answer.update(response.json())
        return True

    await until(taken, ACCEPT_SECONDS, f"start accepted by {url}", scale)
    return answer


async def signed_in(http: httpx.AsyncClient, api: str) -> dict[str, str]:
    email = f"scale-{uuid.uuid4().hex[:12]}@example.com"
    (await http.post(f"{api}/auth/register", json={"email": email, "password": PASSWORD})).raise_for_status()
    login = await http.post(f"{api}/auth/login", json={"email": email, "password": PASSWORD})
    return {"Authorization": f"Bearer {login.raise_for_status().json()['access_token']}"}


@dataclass
class Checkout:
    card: str
    """`success` or `declined`: what the customer pays with, so what the payment must end as."""
    payment_id: str = ""
    status: str = ""


async def checkout(scale: Scale, http: httpx.AsyncClient, index: int, card: str, tally: Tally) -> Checkout:
    """Sign up, check out PREMIUM through one API, pay at the emulator with the webhook going to the other,
    wait for the payment to end (asked of the first API again)."""
    api, other = scale.api(index), scale.api(index + 1)
    auth = await signed_in(http, api)
    headers = auth | {"Idempotency-Key": uuid.uuid4().hex}
    body = {"tier": "PREMIUM", "gateway": "STRIPE"}
    started = await accepted(http, f"{api}/api/payments/checkout", headers, body, tally, scale)
    done = Checkout(card, payment_id=started["payment"]["id"])

    async def paid() -> bool:
        try:
            await local_stripe.pay(scale.settings, done.payment_id, card, f"{other}/api/payments/webhooks/STRIPE")
        except local_stripe.EmulatorError as err:
            if "has no PaymentIntent" in str(err):  # accepted before its workflow created one: not yet
                return False
            raise
        return True

    await until(paid, ACCEPT_SECONDS, f"payment {done.payment_id} paid at the emulator", scale)

    async def ended() -> bool:
        try:
            response = await http.get(f"{api}/api/payments/{done.payment_id}", headers=auth)
        except httpx.TransportError:
            return False  # a read: asked again on the next round
        done.status = response.json()["status"] if response.status_code == 200 else ""
        return done.status in {"COMPLETED", "FAILED"}

    await until(ended, SETTLE_SECONDS, f"payment {done.payment_id} ended", scale)
    return done


async def prototype(scale: Scale, http: httpx.AsyncClient, index: int, tally: Tally) -> str:
    """Sign up, submit an idea through one API, follow its status through the other until it has ended."""
    auth = await signed_in(http, scale.api(index))
    headers = auth | {"Idempotency-Key": uuid.uuid4().hex}
    started = await accepted(http, f"{scale.api(index)}/api/ai/prototype", headers, {"idea": IDEA}, tally, scale)
    status_url = f"{scale.api(index + 1)}{started['status_url']}"

    async def ended() -> bool:
        try:
            response = await http.get(status_url, headers=auth, params={"wait": 10}, timeout=30)
        except httpx.TransportError:
            return False  # a read: asked again on the next round
        return response.status_code == 200 and response.json()["status"] in {"COMPLETED", "FAILED", "CANCELLED"}

    await until(ended, SETTLE_SECONDS, f"prototype {started['prototype_id']} ended", scale)
    return str(started["prototype_id"])


async def contact(scale: Scale, http: httpx.AsyncClient, index: int, tally: Tally) -> None:
    body = {"name": "Scale", "email": f"scale-{uuid.uuid4().hex[:12]}@example.com", "message": "A scale message."}
    await accepted(http, f"{scale.api(index)}/api/contact", {}, body, tally, scale)


def client() -> httpx.AsyncClient:
    """Idle connections dropped after 2 s: uvicorn closes them after 5, and a request sent on one it is closing
    fails with "Server disconnected" though the API is fine."""
    return httpx.AsyncClient(timeout=30, limits=httpx.Limits(keepalive_expiry=2.0))


async def bounded(concurrency: int, jobs: list[Callable[[], Awaitable[Any]]]) -> list[Any]:
    gate = asyncio.Semaphore(concurrency)

    async def one(job: Callable[[], Awaitable[Any]]) -> Any:
        async with gate:
            return await job()

    return await asyncio.gather(*(one(job) for job in jobs))


# --- the chaos run ------------------------------------------------------------------------------------


@dataclass
class ChaosReport:
    checkouts: list[Checkout]
    prototypes: list[str]
    kills: int
    seconds: float
    retried: Counter[str]
    problems: list[str]
    durations: dict[str, list[float]]
    """Seconds from a customer's sign-up until its checkout or prototype ended, by kind."""

    def summary(self) -> str:
        paid = sum(1 for one in self.checkouts if one.card == "success")
        retried = ", ".join(f"{count} x {why}" for why, count in sorted(self.retried.items())) or "none"
        took = "; ".join(
            f"{kind} median {statistics.median(seconds):.0f} s, slowest {max(seconds):.0f} s"
            for kind, seconds in sorted(self.durations.items())
        )
        return (
            f"{len(self.checkouts)} checkouts ({paid} paid, {len(self.checkouts) - paid} declined) and "
            f"{len(self.prototypes)} prototypes in {self.seconds:.0f} s, {self.kills} worker kills (SIGKILL); "
            f"starts retried by the clients: {retried}\nended after: {took}\n"
            + ("nothing lost, nothing done twice" if not self.problems else "\n".join(self.problems))
        )


async def chaos(
    scale: Scale,
    *,
    checkouts: int,
    declined: int,
    prototypes: int,
    concurrency: int,
    kill_every: tuple[float, float],
    max_kills: int,
    seed: int,
) -> ChaosReport:
    chooser = random.Random(seed)
    tally = Tally()
    durations: dict[str, list[float]] = {}

    async def timed(kind: str, job: Callable[[], Awaitable[Any]]) -> Any:
        started = time.monotonic()
        result = await job()
        durations.setdefault(kind, []).append(time.monotonic() - started)
        return result

    cards = ["declined"] * declined + ["success"] * (checkouts - declined)
    chooser.shuffle(cards)
    started = time.monotonic()
    async with client() as http:
        jobs: list[Callable[[], Awaitable[Any]]] = [
            partial(timed, "checkouts", partial(checkout, scale, http, index, card, tally))
            for index, card in enumerate(cards)
        ]
        jobs += [
            partial(timed, "prototypes", partial(prototype, scale, http, index, tally)) for index in range(prototypes)
        ]
        chooser.shuffle(jobs)
        driving = asyncio.create_task(bounded(concurrency, jobs))
        while not driving.done() and scale.kills < max_kills:
            with suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(driving), chooser.uniform(*kill_every))
            if not driving.done():
                scale.kill_a_worker(chooser)
        results = await driving
    seconds = time.monotonic() - started
    done_checkouts = [result for result in results if isinstance(result, Checkout)]
    done_prototypes = [result for result in results if isinstance(result, str)]
    problems = await check(scale, done_checkouts, done_prototypes)
    return ChaosReport(done_checkouts, done_prototypes, scale.kills, seconds, tally.retried, problems, durations)


async def check(scale: Scale, checkouts: list[Checkout], prototypes: list[str]) -> list[str]:
    """Nothing lost, nothing done twice: the database, the emulator and the outbox, each read afresh."""
    problems: list[str] = []
    outbox = scale.settings.outbox_dir
    expected = {f"payment-{one.payment_id}-receipt.eml" for one in checkouts if one.card == "success"}
    expected |= {f"prototype-{prototype_id}-ready.eml" for prototype_id in prototypes}

    async def emailed() -> bool:  # the workflows email after the row says COMPLETED: a moment later
        return expected <= {path.name for path in outbox.glob("*.eml")}

    with suppress(RunFailed):  # one still missing after this is reported below, by name
        await until(emailed, EMAIL_SECONDS, "every receipt and 'ready' email in the outbox", scale)
    written = Counter(path.name for path in outbox.glob("*.eml"))
    async with await psycopg.AsyncConnection.connect(scale.database_url) as database:
        rows = await database.execute(
            "SELECT p.id::text, p.status::text, u.tier::text,"
            " (SELECT count(*) FROM payments q WHERE q.user_id = p.user_id) FROM payments p JOIN users u"
            " ON u.id = p.user_id"
        )
        payments = {row[0]: row[1:] for row in await rows.fetchall()}
        rows = await database.execute(
            "SELECT p.id::text, p.status::text, p.file_id IS NOT NULL,"
            " (SELECT count(*) FROM prototypes q WHERE q.user_id = p.user_id),"
            " (SELECT count(*) FROM files f WHERE f.user_id = p.user_id AND f.content_type = 'application/zip'),"
            " (SELECT count(*) FROM files f WHERE f.user_id = p.user_id AND f.content_type = 'image/png')"
            " FROM prototypes p"
        )
        stored_prototypes = {row[0]: row[1:] for row in await rows.fetchall()}
    intents = await emulator_intents(scale.settings)
    for one in checkouts:
        want = "COMPLETED" if one.card == "success" else "FAILED"
        if one.payment_id not in payments:
            problems.append(f"payment {one.payment_id}: no row")
            continue
        status, tier, rows_of_user = payments[one.payment_id]
        if status != want or one.status != want:
            problems.append(f"payment {one.payment_id} ({one.card} card): {status} in the row, {one.status} answered")
        if rows_of_user != 1:
            problems.append(f"payment {one.payment_id}: its customer has {rows_of_user} payment rows, not 1")
        if (tier == "PREMIUM") != (one.card == "success"):
            problems.append(f"payment {one.payment_id} ({one.card} card): the customer's tier is {tier}")
        mine = intents.get(one.payment_id, [])
        charged = sum(1 for status in mine if status == "succeeded")
        if len(mine) != 1:
            problems.append(f"payment {one.payment_id}: {len(mine)} PaymentIntents at the emulator ({mine}), not 1")
        if charged != (1 if one.card == "success" else 0):
            problems.append(f"payment {one.payment_id} ({one.card} card): charged {charged} times at the emulator")
        receipts = sum(count for name, count in written.items() if name.startswith(f"payment-{one.payment_id}-receipt"))
        if receipts != (1 if one.card == "success" else 0):
            problems.append(f"payment {one.payment_id} ({one.card} card): {receipts} receipts in the outbox")
    if len(payments) != len(checkouts):
        problems.append(f"{len(payments)} payment rows for {len(checkouts)} checkouts")
    for prototype_id in prototypes:
        if prototype_id not in stored_prototypes:
            problems.append(f"prototype {prototype_id}: no row")
            continue
        status, has_zip, rows_of_user, zips_of_user, pictures_of_user = stored_prototypes[prototype_id]
        if status != "COMPLETED" or not has_zip:
            problems.append(f"prototype {prototype_id}: {status}, zip {'stored' if has_zip else 'missing'}")
        if rows_of_user != 1 or zips_of_user != 1 or pictures_of_user > 1:  # a picture where the worker has a browser
            problems.append(
                f"prototype {prototype_id}: {rows_of_user} prototype rows, {zips_of_user} zips, "
                f"{pictures_of_user} pictures"
            )
        ready = sum(count for name, count in written.items() if name.startswith(f"prototype-{prototype_id}-ready"))
        if ready != 1:
            problems.append(f"prototype {prototype_id}: {ready} 'ready' emails in the outbox, not 1")
    if len(stored_prototypes) != len(prototypes):
        problems.append(f"{len(stored_prototypes)} prototype rows for {len(prototypes)} prototypes")
    return problems


async def emulator_intents(settings: Settings) -> dict[str, list[str]]:
    """Every PaymentIntent at the emulator, by our payment id (their metadata): the status of each."""
    found: dict[str, list[str]] = {}
    params = {"limit": "100"}
    async with httpx.AsyncClient(base_url=local_stripe.url(settings), auth=(local_stripe.SECRET_KEY, "")) as stripe:
        while True:
            page = (await stripe.get("/v1/payment_intents", params=params)).raise_for_status().json()
            for intent in page["data"]:
                payment_id = (intent.get("metadata") or {}).get("payment_id")
                if payment_id:
                    found.setdefault(payment_id, []).append(intent["status"])
            if not page["has_more"]:
                return found
            params["starting_after"] = page["data"][-1]["id"]


# --- the throughput run -------------------------------------------------------------------------------


@dataclass
class Measured:
    rate: float
    """Completed workflows per second."""
    cpu_ms: dict[str, float]
    """CPU (user + system, every process and thread) per completed workflow, in ms, by part of the stack."""


def cpu_seconds(pid: int) -> float:
    """User and system CPU of a process tree so far, with that of its children that have ended (the sandbox's
    jailed runs, each a short-lived child of a worker), from /proc."""
    ticks = 0
    for current in tree(pid):
        with suppress(OSError):
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += sum(int(value) for value in fields[11:15])  # utime, stime, cutime, cstime
    return ticks / CLOCK_TICKS


def cpu_by_part(scale: Scale) -> dict[str, float]:
    """CPU seconds so far of each part: the API processes, the workers, Temporal, the emulator, the clients."""
    parts: dict[str, float] = {}
    for child in scale.stack.children:
        part = child.name.split("-")[0]
        parts[part] = parts.get(part, 0.0) + cpu_seconds(child.process.pid)
    own = resource.getrusage(resource.RUSAGE_SELF)
    parts["clients"] = own.ru_utime + own.ru_stime
    return parts


async def throughput(scale: Scale, workload: str, count: int, concurrency: int) -> Measured:
    """Completed workflows per second: `count` of the workload at `concurrency`, from the first start until the
    last has ended (checkouts: COMPLETED; contact messages: the row NOTIFIED, both emails written; prototypes:
    ended), and the CPU each part of the stack spent on each."""
    tally = Tally()
    async with client() as http:
        cpu_before = cpu_by_part(scale)
        started = time.monotonic()
        if workload == "checkouts":
            ended = await bounded(
                concurrency, [partial(checkout, scale, http, index, "success", tally) for index in range(count)]
            )
            if any(one.status != "COMPLETED" for one in ended):
                raise RunFailed(f"checkouts ended {Counter(one.status for one in ended)}")
        elif workload == "prototypes":
            await bounded(concurrency, [partial(prototype, scale, http, index, tally) for index in range(count)])
        else:
            before = await notified_contacts(scale)
            await bounded(concurrency, [partial(contact, scale, http, index, tally) for index in range(count)])

            async def notified() -> bool:
                return await notified_contacts(scale) >= before + count

            await until(notified, SETTLE_SECONDS, f"{count} contact messages notified", scale)
        seconds = time.monotonic() - started
        cpu_after = cpu_by_part(scale)
    spent = {part: (cpu_after[part] - cpu_before.get(part, 0.0)) * 1000 / count for part in cpu_after}
    return Measured(count / seconds, spent)


async def notified_contacts(scale: Scale) -> int:
    """Contact messages whose emails are both out (the workflow's last step marks the row NOTIFIED)."""
    async with await psycopg.AsyncConnection.connect(scale.database_url) as database:
        rows = await database.execute("SELECT count(*) FROM contacts WHERE status = 'NOTIFIED'")
        row = await rows.fetchone()
    return int(row[0]) if row else 0


# --- the command ---------------------------------------------------------------------------------------


async def run_chaos(args: argparse.Namespace) -> int:
    async with running(apis=args.apis, workers=args.workers, port_base=args.port_base, keep=args.keep) as scale:
        print(f"stack up: APIs {', '.join(scale.api_urls)}, {args.workers} workers; driving", flush=True)
        report = await chaos(
            scale,
            checkouts=args.checkouts,
            declined=args.declined,
            prototypes=args.prototypes,
            concurrency=args.concurrency,
            kill_every=(args.kill_min, args.kill_max),
            max_kills=args.max_kills,
            seed=args.seed,
        )
    print(report.summary(), flush=True)
    return 1 if report.problems else 0


async def run_throughput(args: argparse.Namespace) -> int:
    measured: dict[tuple[str, int], list[Measured]] = {}
    for workers in args.worker_counts:
        async with running(apis=args.apis, workers=workers, port_base=args.port_base) as scale:
            for _ in range(args.rounds):
                for workload in args.workloads:
                    one = await throughput(scale, workload, args.count, args.concurrency)
                    measured.setdefault((workload, workers), []).append(one)
                    print(f"{workload:>10}, {workers} workers: {one.rate:6.2f}/s; {cpu_line(one.cpu_ms)}", flush=True)
    print(
        f"\n{args.count} per round at concurrency {args.concurrency}, {args.apis} API processes, "
        f"{os.cpu_count()} CPUs; the median round (by rate) of each:"
    )
    for workload in args.workloads:
        for workers in args.worker_counts:
            rounds = sorted(measured[(workload, workers)], key=lambda one: one.rate)
            median = rounds[len(rounds) // 2]
            rates = ", ".join(f"{one.rate:.2f}" for one in rounds)
            print(
                f"  {workload:>10}, {workers} workers: {median.rate:6.2f}/s (rounds {rates}); "
                f"{cpu_line(median.cpu_ms)}",
                flush=True,
            )
    return 0


def cpu_line(cpu_ms: dict[str, float]) -> str:
    parts = ", ".join(f"{part} {ms:.0f}" for part, ms in sorted(cpu_ms.items()))
    return f"CPU ms per workflow: {parts}; total {sum(cpu_ms.values()):.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", choices=("chaos", "throughput"), default="chaos")
    parser.add_argument("--apis", type=int, default=2, help="API processes, each on its own port")
    parser.add_argument("--workers", type=int, default=3, help="worker processes (chaos)")
    parser.add_argument(
        "--port-base",
        type=int,
        default=PORT_BASE,
        help="consecutive ports from here (about 20), below the ephemeral range: none is taken meanwhile",
    )
    parser.add_argument("--keep", action="store_true", help="keep the logs and the data folder after a pass")
    parser.add_argument("--seed", type=int, default=26)
    chaos_options = parser.add_argument_group("chaos")
    chaos_options.add_argument("--checkouts", type=int, default=40)
    chaos_options.add_argument("--declined", type=int, default=10, help="of the checkouts, paid with a declined card")
    chaos_options.add_argument("--prototypes", type=int, default=10)
    chaos_options.add_argument("--concurrency", type=int, default=8, help="customers at once")
    chaos_options.add_argument("--kill-min", type=float, default=2.0, help="seconds between kills, at least")
    chaos_options.add_argument("--kill-max", type=float, default=6.0, help="seconds between kills, at most")
    chaos_options.add_argument("--max-kills", type=int, default=30)
    measure = parser.add_argument_group("throughput")
    measure.add_argument("--worker-counts", type=lambda text: [int(n) for n in text.split(",")], default=[1, 2, 3])
    measure.add_argument(
        "--workloads",
        type=lambda text: text.split(","),
        default=["checkouts", "contact"],
        help="of: checkouts, contact (I/O-bound), prototypes (the sandbox: CPU-bound)",
    )
    measure.add_argument("--count", type=int, default=60, help="workflows per round and workload")
    measure.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if args.declined > args.checkouts:
        parser.error("--declined cannot exceed --checkouts")
    if args.mode == "throughput" and "--concurrency" not in sys.argv:
        args.concurrency = 20
    try:
        sys.exit(asyncio.run(run_chaos(args) if args.mode == "chaos" else run_throughput(args)))
    except RunFailed as failed:
        sys.exit(f"scale run failed: {failed}")


if __name__ == "__main__":
    main()
