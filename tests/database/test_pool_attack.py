"""A pool-starvation attack, reproduced: one account's slow uploads and long polls must not starve anyone else.

With a database pool of 5, fifteen uploads that send a byte a second and sixteen `?wait=60` polls on a
prototype that makes no progress (no worker on its task queue) are in flight; meanwhile other users sign in,
ask who they are and upload a file, each within 2 seconds and with its usual status. If requests kept their
pooled connection while they waited on the network, every one of these would answer 500 after 30 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from conftest import AppFactory
from helpers import bearer, eventually, register_and_login, serve

from settings import Settings

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(256)) * 4
SLOW_UPLOADS = 15
LONG_POLLS = 16
PROMPT_ANSWER_SECONDS = 2.0


def multipart(boundary: str, name: str = "slow.png") -> bytes:
    return (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()


async def slow_body(boundary: str, released: asyncio.Event) -> AsyncIterator[bytes]:
    """A valid upload that sends one byte a second until the test releases it."""
    yield multipart(boundary) + PNG
    while not released.is_set():
        yield b"\x00"
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(released.wait(), timeout=1.0)
    yield f"\r\n--{boundary}--\r\n".encode()


async def slow_upload(api: httpx.AsyncClient, token: str, released: asyncio.Event) -> httpx.Response:
    boundary = uuid.uuid4().hex
    return await api.post(
        "/api/files/upload",
        content=slow_body(boundary, released),
        headers={**bearer(token), "Content-Type": f"multipart/form-data; boundary={boundary}"},
        timeout=120,
    )


async def quick_upload(api: httpx.AsyncClient, token: str) -> httpx.Response:
    boundary = uuid.uuid4().hex
    body = multipart(boundary, "quick.png") + PNG + f"\r\n--{boundary}--\r\n".encode()
    return await api.post(
        "/api/files/upload",
        content=body,
        headers={**bearer(token), "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )


def spooled(settings: Settings) -> int:
    folder = settings.data_dir / "uploads-in-progress"
    return sum(1 for _ in folder.iterdir()) if folder.exists() else 0


@pytest.fixture(params=["postgresql", "sqlite"])
def attack_settings(request: pytest.FixtureRequest, settings: Settings, tmp_path: Path) -> Settings:
    overrides: dict[str, object] = {
        "database_pool_size": 5,
        "database_pool_overflow": 0,
        "rate_limit_enabled": False,  # the limits are another defence; this test is about the pool
        "uploads_per_user_at_once": SLOW_UPLOADS,  # so is the bound on one user's uploads in flight
    }
    if request.param == "sqlite":
        overrides |= {"database_url": None, "run_migrations_on_start": True, "data_dir": tmp_path / "embedded"}
    return settings.model_copy(update=overrides)


async def test_slow_uploads_and_long_polls_of_one_account_starve_no_one(
    make_app: AppFactory, attack_settings: Settings
) -> None:
    app = make_app(**{key: getattr(attack_settings, key) for key in attack_settings.model_fields_set})
    settings: Settings = app.state.settings
    async with serve(app) as api:
        attacker = await register_and_login(api)
        victim = await register_and_login(api)
        accepted = await api.post(
            "/api/ai/prototype", json={"idea": "A to-do list"}, headers=bearer(attacker["access_token"])
        )
        assert accepted.status_code == 202, accepted.text  # no worker serves this test's queue: it never moves
        status_url = accepted.json()["status_url"]

        released = asyncio.Event()
        uploads = [
            asyncio.create_task(slow_upload(api, attacker["access_token"], released)) for _ in range(SLOW_UPLOADS)
        ]
        polls = [
            asyncio.create_task(api.get(f"{status_url}?wait=60", headers=bearer(attacker["access_token"]), timeout=120))
            for _ in range(LONG_POLLS)
        ]
        try:
            await eventually(
                lambda: asyncio.sleep(0, spooled(settings) == SLOW_UPLOADS), what="every slow upload in flight"
            )
            for _round in range(3):
                async with asyncio.timeout(PROMPT_ANSWER_SECONDS):
                    me = await api.get("/auth/me", headers=bearer(victim["access_token"]))
                async with asyncio.timeout(PROMPT_ANSWER_SECONDS):
                    login = await api.post(
                        "/auth/login", json={"email": victim["email"], "password": victim["password"]}
                    )
                async with asyncio.timeout(PROMPT_ANSWER_SECONDS):
                    uploaded = await quick_upload(api, victim["access_token"])
                assert (me.status_code, login.status_code, uploaded.status_code) == (200, 200, 201), (
                    me.text,
                    login.text,
                    uploaded.text,
                )
                assert not any(task.done() for task in uploads + polls), "the attack must still be in flight"
        finally:
            released.set()
            for poll in polls:
                poll.cancel()
            finished = await asyncio.gather(*uploads, return_exceptions=True)
            await asyncio.gather(*polls, return_exceptions=True)
        assert [getattr(response, "status_code", response) for response in finished] == [201] * SLOW_UPLOADS


async def test_a_flood_of_one_accounts_signed_in_reads_queues_on_the_hot_pool(make_app: AppFactory) -> None:
    """Every signed-in request's session check (and the file list) goes to the hot pool (psycopg's); a flood
    beyond its connections waits its turn (or is shed with a 503 past API_MAX_CONCURRENCY), never fails, never
    drains SQLAlchemy's pool onto the costlier path, and another user is answered as usual right after."""
    app = make_app(database_pool_size=2, database_pool_overflow=0, rate_limit_enabled=False)  # one hot connection
    async with serve(app) as api:
        attacker, victim = await register_and_login(api), await register_and_login(api)
        checkouts: list[object] = []
        database = app.state.runtime.database
        sa.event.listen(database.engine.sync_engine.pool, "checkout", lambda *_: checkouts.append(None))
        database.hot.pop_stats()  # its counters from here on
        flood = [
            api.get("/auth/me" if index % 2 else "/api/files", headers=bearer(attacker["access_token"]))
            for index in range(150)
        ]
        statuses = {answer.status_code for answer in await asyncio.gather(*flood)}
        assert statuses <= {200, 503} and 200 in statuses
        assert not checkouts  # every read took its turn on the hot connection
        stats = database.hot.get_stats()
        assert stats["pool_size"] == 1 and stats.get("connections_num", 0) == 0  # the one opened at sign-in
        async with asyncio.timeout(PROMPT_ANSWER_SECONDS):
            me = await api.get("/auth/me", headers=bearer(victim["access_token"]))
        assert me.status_code == 200
