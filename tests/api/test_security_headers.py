"""Safe responses: every kind of answer carries the headers that keep a browser and a shared cache honest;
HSTS only when the API is said to be served over TLS; /docs can be switched off."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
import pytest
from conftest import AppFactory
from helpers import bearer, new_email, serve
from payload_keys import PAYLOAD_KEYS

from activities.storage import sign_download
from models.types import utcnow
from settings import Settings

SAFE = {"x-content-type-options": "nosniff", "referrer-policy": "no-referrer", "x-frame-options": "DENY"}
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def assert_safe(label: str, response: httpx.Response, *, private: bool, hsts: bool = False) -> None:
    for name, value in SAFE.items():
        assert response.headers.get_list(name) == [value], (label, name, response.headers)
    assert "server" not in response.headers, label
    if private:
        assert "no-store" in response.headers.get("cache-control", ""), (label, response.headers)
        assert len(response.headers.get_list("cache-control")) == 1, label
    assert ("strict-transport-security" in response.headers) is hsts, label
    if hsts:
        assert response.headers["strict-transport-security"] == "max-age=63072000; includeSubDomains"


async def test_every_kind_of_answer_carries_the_security_headers(make_app: AppFactory, settings: Settings) -> None:
    async with serve(make_app()) as api:
        email, password = new_email(), "correct horse battery"
        created = await api.post("/auth/register", json={"email": email, "password": password, "name": "Ada"})
        duplicate = await api.post("/auth/register", json={"email": email, "password": password, "name": "Ada"})
        tokens = (await api.post("/auth/login", json={"email": email, "password": password})).json()
        me = bearer(tokens["access_token"])
        uploaded = await api.post("/api/files/upload", files={"file": ("a.png", PNG, "image/png")}, headers=me)
        file_id = uploaded.json()["fileId"]
        link = sign_download(settings, uuid.UUID(file_id), utcnow() + timedelta(hours=1))
        answers = {
            "200 JSON": (await api.get("/health"), False),
            "200 JSON, signed in": (await api.get("/auth/me", headers=me), True),
            "202": (created, False),
            "201 upload": (uploaded, True),
            "202 known address": (duplicate, False),
            "401 envelope": (await api.get("/auth/me"), False),
            "404 unknown path": (await api.get("/no/such/path"), False),
            "404 someone's file": (await api.get(f"/api/files/{uuid.uuid4()}", headers=me), True),
            "422": (await api.post("/auth/login", json={}), False),
            "download by token": (await api.get(f"/api/files/{file_id}", params={"token": link}), True),
            # The name percent-encoded: the route decodes it, so the answer is just as private.
            "download by %74oken": (await api.get(f"/api/files/{file_id}?%74oken={link}"), True),
            "download by bearer": (await api.get(f"/api/files/{file_id}", headers=me), True),
            "redirect": (await api.get("/api/files/", headers=me), True),
            "204": (await api.post("/auth/logout", json={"refresh_token": tokens["refresh_token"]}), False),
        }
    expected = {"200": 200, "201": 201, "202": 202, "401": 401, "404": 404, "422": 422, "204": 204}
    for label, (response, private) in answers.items():
        code = label.split()[0]
        if code in expected:
            assert response.status_code == expected[code], (label, response.text)
        assert_safe(label, response, private=private)
    assert answers["download by token"][0].content == answers["download by %74oken"][0].content == PNG
    assert answers["redirect"][0].status_code in (307, 308)
    # The download sets its own Cache-Control; it is kept, not doubled.
    assert answers["download by token"][0].headers["cache-control"] == "private, no-store"


async def test_a_rate_limited_answer_carries_them_too(make_app: AppFactory) -> None:
    async with serve(make_app(rate_limit_default="1/day")) as api:
        first = await api.get("/api/payments/catalogue")
        refused = await api.get("/api/payments/catalogue", headers={"Authorization": "Bearer not-a-token"})
    assert first.status_code == 200
    assert refused.status_code == 429
    assert_safe("429", refused, private=True)


async def test_hsts_only_when_the_api_is_served_over_tls(make_app: AppFactory) -> None:
    async with serve(make_app(api_behind_tls=True)) as api:
        assert_safe("TLS", await api.get("/health"), private=False, hsts=True)
        assert_safe("TLS 404", await api.get("/nowhere"), private=False, hsts=True)
    async with serve(make_app()) as api:
        assert_safe("plain", await api.get("/health"), private=False, hsts=False)


async def test_docs_and_schema_can_be_switched_off(make_app: AppFactory) -> None:
    paths = ("/docs", "/redoc", "/openapi.json")
    async with serve(make_app()) as api:
        assert [(await api.get(path)).status_code for path in paths] == [200, 200, 200]
    async with serve(make_app(api_docs_enabled=False)) as api:
        assert [(await api.get(path)).status_code for path in paths] == [404, 404, 404]


@pytest.mark.parametrize(
    ("environment", "setting", "enabled"),
    [("development", None, True), ("test", None, True), ("production", None, False), ("production", True, True)],
)
def test_docs_default_on_in_development_and_off_in_production(
    environment: str, setting: bool | None, enabled: bool
) -> None:
    production_safe = {"jwt_secret": "x" * 48, "payload_keys": PAYLOAD_KEYS}
    settings = Settings(_env_file=None, environment=environment, api_docs_enabled=setting, **production_safe)  # type: ignore[call-arg, arg-type]
    assert settings.docs_enabled is enabled
