"""Verification and password reset end to end, through the outbox (the embedded mailer), against PostgreSQL,
Temporal and the worker: the links as emailed, expired and reused ones, ten concurrent uses of one reset code,
the per-account email interval, and registration and "forgot password" telling nobody who has an account."""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
from helpers import bearer, eventually, new_email, serve
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.background import BackgroundTasks
from temporalio.client import Client

import services.addresses as addresses
from api.app import create_app
from models.tokens import AddressPurpose, address_token_subject
from settings import Settings
from worker import build_worker

PASSWORD = "correct horse battery"
_RESET_CODE = re.compile(r"^(pr1\.\S+)$", re.MULTILINE)
_VERIFY_CODE = re.compile(r"^(av1\.\S+)$", re.MULTILINE)


@asynccontextmanager
async def stack(settings: Settings, temporal: Client, engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    """The API (over ASGI) and a worker, both with these settings (the worker signs the links)."""
    async with build_worker(temporal, settings, engine), serve(create_app(settings, temporal=temporal)) as http:
        yield http


def mails_to(settings: Settings, address: str, kind: str) -> list[EmailMessage]:
    """The outbox's account emails of `kind` (verify, known, reset) to `address`."""
    found = []
    for path in sorted(settings.outbox_dir.glob(f"account-{kind}-*.eml")):
        message = email.parser.BytesParser(policy=email.policy.default).parsebytes(path.read_bytes())
        assert isinstance(message, EmailMessage)
        if message["To"] == address:
            found.append(message)
    return found


async def one_mail(settings: Settings, address: str, kind: str) -> str:
    async def arrived() -> list[EmailMessage] | None:
        return mails_to(settings, address, kind) or None

    [message] = await eventually(arrived, within=30, what=f"the {kind} email to {address}")
    body = message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def verification_code(text: str) -> str:
    [code] = _VERIFY_CODE.findall(text)
    return code


async def verify(http: httpx.AsyncClient, code: str, headers: dict[str, str]) -> httpx.Response:
    return await http.post("/auth/verify", json={"token": code}, headers=headers)


def reset_code(text: str) -> str:
    [code] = _RESET_CODE.findall(text)
    return code


async def sign_up(http: httpx.AsyncClient, address: str) -> dict[str, Any]:
    registered = await http.post("/auth/register", json={"email": address, "password": PASSWORD})
    assert registered.status_code == 202, registered.text
    tokens = await http.post("/auth/login", json={"email": address, "password": PASSWORD})
    assert tokens.status_code == 200, tokens.text  # usable before verification
    return {"headers": bearer(tokens.json()["access_token"]), **tokens.json()}


async def me(http: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
    return await http.get("/auth/me", headers=headers)


async def past(expiry: int) -> bool | None:
    return time.time() > expiry + 0.5 or None


@pytest.mark.slow
async def test_the_emailed_link_verifies_the_address_once_and_resends_are_limited(
    settings: Settings, temporal: Client, engine: AsyncEngine
) -> None:
    address = new_email()
    async with stack(settings, temporal, engine) as http:
        account = await sign_up(http, address)
        assert (await me(http, account["headers"])).json()["email_verified_at"] is None
        # Asked again and again within the interval: the API answers alike, the workflow sends nothing more.
        for _ in range(3):
            again = await http.post("/auth/verify/resend", headers=account["headers"])
            assert again.status_code == 202, again.text
        text = await one_mail(settings, address, "verify")
        code = verification_code(text)

        verified = await verify(http, code, account["headers"])
        assert verified.status_code == 200, verified.text
        assert verified.json() == {"email": address, "email_verified": True}
        assert (await me(http, account["headers"])).json()["email_verified_at"] is not None
        assert (await verify(http, code, account["headers"])).status_code == 200  # again: harmless
        # The signals are handled in order: once the reset email is out, the resends before it were handled.
        assert (await http.post("/auth/password/forgot", json={"email": address})).status_code == 202
        await one_mail(settings, address, "reset")
        assert len(mails_to(settings, address, "verify")) == 1

        # A tampered code, another purpose's, and garbage are one answer.
        user, expiry = address_token_subject(AddressPurpose.VERIFY, code)
        for token in (
            code[:-2] + ("AA" if not code.endswith("AA") else "BB"),
            f"pr1.{user.hex}.{expiry}.{'A' * 43}",
            "x",
        ):
            refused = await verify(http, token, account["headers"])
            assert (refused.status_code, refused.json()["error"]) == (
                400,
                "This verification code is invalid or has expired",
            )
        assert (await http.post("/auth/verify", json={"token": code})).status_code == 401  # signed in only


async def test_an_expired_verification_code_verifies_nothing(
    settings: Settings, temporal: Client, engine: AsyncEngine
) -> None:
    settings = settings.model_copy(update={"email_verification_hours": 1 / 3600})  # one second
    address = new_email()
    async with stack(settings, temporal, engine) as http:
        account = await sign_up(http, address)
        code = verification_code(await one_mail(settings, address, "verify"))
        _, expiry = address_token_subject(AddressPurpose.VERIFY, code)
        await eventually(lambda: past(expiry), within=10, what="the code to expire")
        expired = await verify(http, code, account["headers"])
        assert expired.status_code == 400, expired.text
        assert (await me(http, account["headers"])).json()["email_verified_at"] is None


async def test_a_reset_code_sets_the_password_once_and_signs_out_everywhere(
    settings: Settings, temporal: Client, engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    address = new_email()
    async with stack(settings, temporal, engine) as http:
        first = await sign_up(http, address)
        second = await http.post("/auth/login", json={"email": address, "password": PASSWORD})
        forgot = await http.post("/auth/password/forgot", json={"email": address.upper()})
        assert forgot.status_code == 202, forgot.text
        code = reset_code(await one_mail(settings, address, "reset"))

        short = await http.post("/auth/password/reset", json={"token": code, "password": "short"})
        assert short.status_code == 422  # the new password is checked as registration's is
        reset = await http.post("/auth/password/reset", json={"token": code, "password": "a brand new one"})
        assert reset.status_code == 204, reset.text
        reused = await http.post("/auth/password/reset", json={"token": code, "password": "yet another one"})
        assert (reused.status_code, reused.json()["error"]) == (
            400,
            "This reset code is invalid, has expired or was already used",
        )

        # Every session is revoked: access tokens at once, refresh tokens too.
        assert (await me(http, first["headers"])).status_code == 401
        assert (await me(http, bearer(second.json()["access_token"]))).status_code == 401
        for tokens in (first, second.json()):
            refused = await http.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
            assert refused.status_code == 401
        old = await http.post("/auth/login", json={"email": address, "password": PASSWORD})
        assert old.status_code == 401
        new = await http.post("/auth/login", json={"email": address, "password": "a brand new one"})
        assert new.status_code == 200
        # The code came to the address: using it verified it.
        assert (await me(http, bearer(new.json()["access_token"]))).json()["email_verified_at"] is not None
        verification = verification_code(await one_mail(settings, address, "verify"))
    # Neither code is in any log line of the API or the worker (the reset's is in a body, never a URL).
    assert "password reset; 2 sessions revoked" in caplog.text and "email account-reset-" in caplog.text
    for secret in (code, verification, code.rsplit(".", 1)[1], verification.rsplit(".", 1)[1]):
        assert secret not in caplog.text


async def test_an_expired_reset_code_changes_nothing(settings: Settings, temporal: Client, engine: AsyncEngine) -> None:
    settings = settings.model_copy(update={"password_reset_minutes": 1 / 60})  # one second
    address = new_email()
    async with stack(settings, temporal, engine) as http:
        await sign_up(http, address)
        assert (await http.post("/auth/password/forgot", json={"email": address})).status_code == 202
        code = reset_code(await one_mail(settings, address, "reset"))
        _, expiry = address_token_subject(AddressPurpose.RESET, code)
        await eventually(lambda: past(expiry), within=10, what="the code to expire")
        expired = await http.post("/auth/password/reset", json={"token": code, "password": "a brand new one"})
        assert expired.status_code == 400, expired.text
        assert (await http.post("/auth/login", json={"email": address, "password": PASSWORD})).status_code == 200


async def test_ten_concurrent_uses_of_one_reset_code_exactly_one_succeeds(
    settings: Settings, temporal: Client, engine: AsyncEngine
) -> None:
    address = new_email()
    async with stack(settings, temporal, engine) as http:
        await sign_up(http, address)
        assert (await http.post("/auth/password/forgot", json={"email": address})).status_code == 202
        code = reset_code(await one_mail(settings, address, "reset"))
        passwords = [f"new password number {n}" for n in range(10)]
        answers = await asyncio.gather(
            *(http.post("/auth/password/reset", json={"token": code, "password": p}) for p in passwords)
        )
        codes = sorted(answer.status_code for answer in answers)
        assert codes == [204] + [400] * 9, [answer.text for answer in answers]
        [winner] = [p for p, answer in zip(passwords, answers, strict=True) if answer.status_code == 204]
        for password in passwords:
            login = await http.post("/auth/login", json={"email": address, "password": password})
            assert login.status_code == (200 if password == winner else 401)


async def test_registering_a_known_address_answers_alike_and_tells_only_its_owner(
    settings: Settings, temporal: Client, engine: AsyncEngine
) -> None:
    known, unknown = new_email(), new_email()
    async with stack(settings, temporal, engine) as http:
        await sign_up(http, known)
        await one_mail(settings, known, "verify")
        again = await http.post("/auth/register", json={"email": known, "password": "the attacker's own"})
        fresh = await http.post("/auth/register", json={"email": unknown, "password": "the attacker's own"})
        assert (again.status_code, again.json()) == (fresh.status_code, fresh.json()) == (202, fresh.json())
        assert again.headers.keys() - {"x-request-id", "date"} == fresh.headers.keys() - {"x-request-id", "date"}
        # The owner is told, and offered a reset; the attacker's password did nothing.
        text = await one_mail(settings, known, "known")
        assert "already has one" in text
        assert (
            await http.post("/auth/login", json={"email": known, "password": "the attacker's own"})
        ).status_code == 401
        code = reset_code(text)
        reset = await http.post("/auth/password/reset", json={"token": code, "password": "the owner's new one"})
        assert reset.status_code == 204, reset.text
        # A registration of an address with no account sends that address a verification link, nothing else.
        await one_mail(settings, unknown, "verify")
        assert mails_to(settings, unknown, "known") == []

        forgot_known = await http.post("/auth/password/forgot", json={"email": known})
        forgot_unknown = await http.post(
            "/auth/password/forgot", json={"email": f"nobody-{uuid.uuid4().hex}@example.com"}
        )
        assert (forgot_known.status_code, forgot_known.json()) == (forgot_unknown.status_code, forgot_unknown.json())
        assert forgot_known.status_code == 202


@pytest.mark.parametrize("path", ["/auth/register", "/auth/password/forgot"])
async def test_known_and_unknown_addresses_do_the_same_work_before_the_answer(
    path: str, settings: Settings, temporal: Client, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What could tell a known address from an unknown one by timing is work done before the answer: both do the
    same (registration: one password hash and one insert that does nothing on a duplicate), and what differs,
    finding the account and asking for its email, is handed to the route's background tasks. Checked by what runs,
    not by the clock, so that a busy machine cannot fail it (the times themselves belong in bench/)."""
    work: list[str] = []
    real_hash, real_add_task = addresses.hash_password, BackgroundTasks.add_task

    async def hashing(*args: Any, **kwargs: Any) -> str:
        work.append("hash")
        return await real_hash(*args, **kwargs)

    def deferring(tasks: BackgroundTasks, function: Any, *args: Any) -> None:
        work.append("after the answer")
        real_add_task(tasks, function, *args)

    monkeypatch.setattr(addresses, "hash_password", hashing)
    monkeypatch.setattr(BackgroundTasks, "add_task", deferring)
    async with stack(settings, temporal, engine) as http:
        known = new_email()
        await sign_up(http, known)
        done: dict[str, tuple[list[str], int, Any]] = {}
        for name, address in (("known", known), ("unknown", new_email())):
            body = (
                {"email": address, "password": "correct horse battery"}
                if path.endswith("register")
                else {"email": address}
            )
            work.clear()
            answer = await http.post(path, json=body)
            done[name] = (list(work), answer.status_code, answer.json())
    assert done["known"] == done["unknown"], done
    assert done["known"][1] == 202
    expected = ["hash", "after the answer"] if path.endswith("register") else ["after the answer"]
    assert done["known"][0] == expected


async def test_whoever_reads_the_inbox_cannot_verify_it_for_an_account_someone_else_registered(
    settings: Settings, temporal: Client, engine: AsyncEngine
) -> None:
    """Mallory registers Dana's address; the code goes to Dana. Dana (or anyone she forwards it to) cannot verify
    Mallory's account with it without Mallory's password, and Mallory cannot without the inbox."""
    dana = new_email()
    async with stack(settings, temporal, engine) as http:
        mallory = await sign_up(http, dana)
        code = verification_code(await one_mail(settings, dana, "verify"))
        danas_own = await sign_up(http, new_email())  # the inbox's reader, signed in to her own account
        for headers in ({}, danas_own["headers"]):
            refused = await http.post("/auth/verify", json={"token": code}, headers=headers)
            assert refused.status_code in (400, 401), refused.text
        for headers in (mallory["headers"], danas_own["headers"]):
            assert (await me(http, headers)).json()["email_verified_at"] is None
