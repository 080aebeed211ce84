"""Auth: register, login, refresh (rotation and theft detection), logout, me, and bad tokens."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta

import httpx
import jwt
import pytest
import sqlalchemy as sa
from helpers import bearer, eventually, new_email, register_and_login
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col

from models.tables import Session
from models.types import utcnow
from services.security import AUDIENCE, RefreshToken, hash_password, verify_password
from settings import Settings


async def test_register_login_me(api: httpx.AsyncClient) -> None:
    account = await register_and_login(api)
    assert account["token_type"] == "bearer"
    assert account["expires_in"] == 15 * 60
    me = await api.get("/auth/me", headers=bearer(account["access_token"]))
    assert me.status_code == 200
    assert me.json()["email"] == account["email"]
    assert me.json()["tier"] == "STANDARD"
    assert "password_hash" not in me.json()


async def test_email_is_case_insensitive_and_unique(api: httpx.AsyncClient) -> None:
    email = new_email()
    first = await api.post("/auth/register", json={"email": email.upper(), "password": "long enough pw"})
    assert first.status_code == 202
    again = await api.post("/auth/register", json={"email": email, "password": "another password"})
    assert (again.status_code, again.json()) == (202, first.json())  # no word of the account that exists
    login = await api.post("/auth/login", json={"email": email.upper(), "password": "long enough pw"})
    assert login.status_code == 200
    me = await api.get("/auth/me", headers=bearer(login.json()["access_token"]))
    assert me.json()["email"] == email
    other = await api.post("/auth/login", json={"email": email, "password": "another password"})
    assert other.status_code == 401  # the second registration changed nothing


async def test_wrong_password_and_unknown_email_look_the_same(api: httpx.AsyncClient) -> None:
    account = await register_and_login(api)

    wrong = await api.post("/auth/login", json={"email": account["email"], "password": "wrong password!"})
    unknown = await api.post("/auth/login", json={"email": new_email(), "password": "wrong password!"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["error"] == unknown.json()["error"] == "Invalid email or password"
    assert wrong.headers["www-authenticate"] == "Bearer"


async def test_unknown_email_still_runs_bcrypt(api: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same work either way: an unknown user is checked against a dummy hash, so timing tells nothing."""
    import bcrypt

    calls: list[bytes] = []
    real_checkpw = bcrypt.checkpw

    def counting_checkpw(password: bytes, hashed: bytes) -> bool:
        calls.append(hashed)
        return real_checkpw(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", counting_checkpw)
    response = await api.post("/auth/login", json={"email": new_email(), "password": "whatever it is"})
    assert response.status_code == 401
    assert len(calls) == 1 and calls[0].startswith(b"$2b$04$")


async def test_password_over_72_bytes_is_refused_clearly(api: httpx.AsyncClient) -> None:
    password = "é" * 37  # 74 bytes in UTF-8, 37 characters
    for route in ("/auth/register", "/auth/login"):
        response = await api.post(route, json={"email": new_email(), "password": password})
        assert response.status_code == 422
        body = response.json()
        assert body["success"] is False
        assert body["details"] == [
            {
                "field": "body.password",
                "message": "password is longer than 72 bytes in UTF-8; bcrypt would silently ignore the rest",
            }
        ]


async def test_refresh_rotates_and_old_token_revokes_the_family(api: httpx.AsyncClient) -> None:
    account = await register_and_login(api)
    first_refresh = account["refresh_token"]

    rotated = await api.post("/auth/refresh", json={"refresh_token": first_refresh})
    assert rotated.status_code == 200
    second = rotated.json()
    assert second["refresh_token"] != first_refresh
    assert (await api.get("/auth/me", headers=bearer(second["access_token"]))).status_code == 200

    # The first token comes back: someone kept a copy. The whole family is revoked.
    reused = await api.post("/auth/refresh", json={"refresh_token": first_refresh})
    assert reused.status_code == 401
    assert "already used" in reused.json()["error"]

    after = await api.post("/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert after.status_code == 401
    me = await api.get("/auth/me", headers=bearer(second["access_token"]))
    assert me.status_code == 401
    assert me.json()["error"] == "Session revoked or user no longer exists"


async def test_other_sessions_survive_a_revoked_family(api: httpx.AsyncClient) -> None:
    account = await register_and_login(api)
    other = await api.post("/auth/login", json={"email": account["email"], "password": account["password"]})
    await api.post("/auth/refresh", json={"refresh_token": account["refresh_token"]})
    await api.post("/auth/refresh", json={"refresh_token": account["refresh_token"]})  # reuse: revoked
    assert (await api.get("/auth/me", headers=bearer(other.json()["access_token"]))).status_code == 200


async def test_logout_revokes_the_session(api: httpx.AsyncClient) -> None:
    account = await register_and_login(api)
    out = await api.post("/auth/logout", json={"refresh_token": account["refresh_token"]})
    assert out.status_code == 204
    assert (await api.post("/auth/refresh", json={"refresh_token": account["refresh_token"]})).status_code == 401
    assert (await api.get("/auth/me", headers=bearer(account["access_token"]))).status_code == 401


async def test_a_token_in_use_is_refused_on_the_first_request_after_logout(api: httpx.AsyncClient) -> None:
    """Authentication may be made cheap, never stale: a token that has just been accepted, again and again
    (anything cached would be warm), is refused by the very next request once its session is revoked."""
    account = await register_and_login(api)
    headers = bearer(account["access_token"])
    for _ in range(3):
        assert (await api.get("/auth/me", headers=headers)).status_code == 200
        assert (await api.get("/api/files", headers=headers)).status_code == 200
    assert (await api.post("/auth/logout", json={"refresh_token": account["refresh_token"]})).status_code == 204
    assert (await api.get("/auth/me", headers=headers)).status_code == 401
    assert (await api.get("/api/files", headers=headers)).status_code == 401


async def test_a_token_in_use_is_refused_once_its_family_is_revoked_for_reuse(api: httpx.AsyncClient) -> None:
    account = await register_and_login(api)
    headers = bearer(account["access_token"])
    assert (await api.get("/auth/me", headers=headers)).status_code == 200
    assert (await api.post("/auth/refresh", json={"refresh_token": account["refresh_token"]})).status_code == 200
    assert (await api.post("/auth/refresh", json={"refresh_token": account["refresh_token"]})).status_code == 401
    assert (await api.get("/auth/me", headers=headers)).status_code == 401


def _forge(settings: Settings, **claims: object) -> str:
    now = utcnow()
    base: dict[str, object] = {
        "sub": str(uuid.uuid4()),
        "sid": str(uuid.uuid4()),
        "typ": "access",
        "iss": settings.jwt_issuer,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + timedelta(minutes=5),
    }
    base.update(claims)
    return jwt.encode(base, settings.jwt_secret.get_secret_value(), algorithm="HS256")


async def test_tampered_expired_and_wrong_type_tokens_are_rejected(api: httpx.AsyncClient, settings: Settings) -> None:
    account = await register_and_login(api)
    header, payload, signature = account["access_token"].split(".")
    claims = jwt.decode(account["access_token"], options={"verify_signature": False})
    tampered_payload = jwt.utils.base64url_encode(
        jwt.api_jws.json.dumps({**claims, "sub": str(uuid.uuid4())}).encode()
    ).decode()
    cases = {
        "tampered": f"{header}.{tampered_payload}.{signature}",
        "bad signature": f"{header}.{payload}.{signature[::-1]}",
        "expired": _forge(settings, sub=claims["sub"], sid=claims["sid"], exp=utcnow() - timedelta(seconds=1)),
        "wrong type": _forge(settings, sub=claims["sub"], sid=claims["sid"], typ="refresh"),
        "wrong audience": _forge(settings, sub=claims["sub"], sid=claims["sid"], aud="someone-else"),
        "other secret": jwt.encode({**claims, "exp": int(time.time()) + 60}, "x" * 40, algorithm="HS256"),
        "alg none": jwt.encode({**claims}, None, algorithm="none"),
        "garbage": "not-a-token",
        "refresh token as access": account["refresh_token"],
    }
    for name, token in cases.items():
        response = await api.get("/auth/me", headers=bearer(token))
        assert response.status_code == 401, name
        assert response.json()["success"] is False, name
    expired = await api.get("/auth/me", headers=bearer(cases["expired"]))
    assert expired.json()["error"] == "Access token expired"
    # and an access token is not a refresh token
    swapped = await api.post("/auth/refresh", json={"refresh_token": account["access_token"]})
    assert swapped.status_code == 401


async def test_missing_token_is_401_with_a_hint(api: httpx.AsyncClient) -> None:
    response = await api.get("/auth/me")
    assert response.status_code == 401
    assert "Authorization: Bearer" in response.json()["error"]


async def test_ten_concurrent_refreshes_of_one_token_give_one_200_and_revoke_the_family(
    api: httpx.AsyncClient,
) -> None:
    """Refreshes racing with one token: every loser of the compare-and-swap is reuse (401, not a 500 from reading
    the expired row after its rollback), and the winner's new tokens die with the family."""
    for _ in range(5):  # the window is narrow in one process: a few families, ten refreshes each
        account = await register_and_login(api)
        results = await asyncio.gather(
            *(api.post("/auth/refresh", json={"refresh_token": account["refresh_token"]}) for _ in range(10))
        )
        statuses = sorted(r.status_code for r in results)
        assert statuses == [200] + [401] * 9, [r.text for r in results]
        winner = next(r.json() for r in results if r.status_code == 200)
        assert (await api.post("/auth/refresh", json={"refresh_token": winner["refresh_token"]})).status_code == 401
        assert (await api.get("/auth/me", headers=bearer(winner["access_token"]))).status_code == 401


async def test_a_refresh_racing_a_rotation_in_flight_revokes_the_family(
    api: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    """The reuse arrives before the winner's answer: the winner's rotation holds the row (uncommitted) while
    the second refresh reads the old hash and tries its swap; once the winner commits, the second is refused
    and the family, the winner's new token included, is revoked."""
    account = await register_and_login(api)
    token = RefreshToken.parse(account["refresh_token"])
    winner = RefreshToken.new(token.session_id)
    async with engine.connect() as held:
        rotated = await held.execute(
            sa.update(Session)
            .where(col(Session.id) == token.session_id, col(Session.token_hash) == token.digest)
            .values(token_hash=winner.digest, generation=Session.generation + 1)
        )
        assert rotated.rowcount == 1
        second = asyncio.create_task(api.post("/auth/refresh", json={"refresh_token": account["refresh_token"]}))

        async def second_waits_for_the_row() -> bool:
            async with engine.connect() as watcher:
                waiting = await watcher.scalar(
                    sa.text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
                )
            return bool(waiting)

        await eventually(second_waits_for_the_row, what="the second refresh to wait on the winner's row lock")
        await held.commit()
    refused = await asyncio.wait_for(second, timeout=20)
    assert refused.status_code == 401, refused.text
    assert "already used" in refused.json()["error"]
    assert (await api.post("/auth/refresh", json={"refresh_token": str(winner)})).status_code == 401


async def test_swagger_authorize_uses_bearer_tokens(api: httpx.AsyncClient) -> None:
    schema = (await api.get("/openapi.json")).json()
    assert schema["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "The access_token from POST /auth/login",
    }
    assert {"HTTPBearer": []} in schema["paths"]["/auth/me"]["get"]["security"]


async def test_every_password_field_refuses_more_than_bcrypt_takes_with_a_422(api: httpx.AsyncClient) -> None:
    """A password over 72 bytes is a 422, not bcrypt's ValueError as a 500 (`DELETE /api/me`, as schemathesis
    found). Login, erasure, registration and reset bound the password alike: 72 bytes of UTF-8 (é is two)."""
    account = await register_and_login(api)
    for too_long in ("x" * 73, "é" * 37):
        attempts = {
            "register": await api.post("/auth/register", json={"email": new_email(), "password": too_long}),
            "login": await api.post("/auth/login", json={"email": account["email"], "password": too_long}),
            "erasure": await api.request(
                "DELETE", "/api/me", json={"password": too_long}, headers=bearer(account["access_token"])
            ),
            "reset": await api.post("/auth/password/reset", json={"token": "pr1.x", "password": too_long}),
        }
        for name, answer in attempts.items():
            assert answer.status_code == 422, (name, answer.text)
            assert "72 bytes" in answer.text, (name, answer.text)
    assert (await api.get("/auth/me", headers=bearer(account["access_token"]))).status_code == 200


async def test_verify_password_never_raises_on_a_password_longer_than_bcrypt_takes() -> None:
    """Any password field a request model forgets to bound still ends in 'wrong password', never a 500; and
    the 72 bytes bcrypt reads do not let a longer password through."""
    password = "p" * 72
    stored = await hash_password(password, 4)
    assert await verify_password(password, stored, 4)
    assert not await verify_password(password + "extra", stored, 4)
    assert not await verify_password("x" * 1000, None, 4)
