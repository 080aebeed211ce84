"""HTTP surface: bad input gets a clear 4xx (never a 500), one error shape, health, CORS, OpenAPI."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from conftest import AppFactory
from helpers import bearer, eventually, new_email, register_and_login, serve
from payload_keys import PAYLOAD_KEYS
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.worker import Worker

from settings import Settings
from worker import build_worker

BAD_REQUESTS: list[tuple[str, str, Any, int, str]] = [
    # (method, path, json body or raw bytes, expected status, a fragment of the error message)
    ("POST", "/auth/register", {"email": "not-an-email", "password": "long enough"}, 422, "body.email"),
    ("POST", "/auth/register", {"email": "a@example.com", "password": "short"}, 422, "body.password"),
    ("POST", "/auth/register", {"email": "a@example.com"}, 422, "body.password: Field required"),
    (
        "POST",
        "/auth/register",
        {"email": "a@example.com", "password": "long enough", "tier": "PREMIUM"},
        422,
        "body.tier: Extra inputs are not permitted",
    ),
    ("POST", "/auth/register", {"email": "a@example.com", "password": "long enough", "name": ""}, 422, "body.name"),
    ("POST", "/auth/register", b"{not json", 422, "JSON"),
    ("POST", "/auth/register", [], 422, "body"),
    ("POST", "/auth/register", None, 422, "body: Field required"),
    ("POST", "/auth/login", {"email": "a@example.com", "password": ""}, 422, "body.password"),
    ("POST", "/auth/login", {"email": 5, "password": "x"}, 422, "body.email"),
    ("POST", "/auth/refresh", {"refresh_token": ""}, 422, "body.refresh_token"),
    ("POST", "/auth/refresh", {"refresh_token": "garbage"}, 401, "malformed refresh token"),
    (
        "POST",
        "/auth/refresh",
        {"refresh_token": "00000000-0000-0000-0000-000000000000.abcdefghijklmnopqrstuvwxyz"},
        401,
        "revoked or expired",
    ),
    ("POST", "/auth/refresh", {"refresh_token": "x" * 600}, 422, "body.refresh_token"),
    ("POST", "/auth/logout", {"refresh_token": "garbage"}, 401, "malformed refresh token"),
    ("GET", "/auth/me", None, 401, "Not authenticated"),
    ("POST", "/api/contact", {"name": "Ada", "email": "ada@example.com", "message": ""}, 422, "body.message"),
    ("POST", "/api/contact", {"name": "Ada", "email": "ada@example.com", "message": "   "}, 422, "body.message"),
    ("POST", "/api/contact", {"name": "Ada", "email": "nope", "message": "hi"}, 422, "body.email"),
    (
        "POST",
        "/api/contact",
        {"name": "Ada", "email": "ada@example.com", "message": "x" * 5001},
        422,
        "at most 5000 characters",
    ),
    (
        "POST",
        "/api/contact",
        {"name": "Ada", "email": "ada@example.com", "message": "hi", "phone": "call me"},
        422,
        "body.phone",
    ),
    ("POST", "/api/contact", {"email": "ada@example.com", "message": "hi"}, 422, "body.name: Field required"),
    ("GET", "/api/contact", None, 405, "Method Not Allowed"),
    ("GET", "/no/such/route", None, 404, "Not Found"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "fragment"), BAD_REQUESTS)
async def test_bad_input_gets_a_clear_4xx(
    api: httpx.AsyncClient, method: str, path: str, body: Any, status: int, fragment: str
) -> None:
    if isinstance(body, bytes):
        response = await api.request(method, path, content=body, headers={"Content-Type": "application/json"})
    else:
        response = await api.request(method, path, json=body)
    assert response.status_code == status, response.text
    payload = response.json()
    assert payload["success"] is False
    assert payload["code"] == status
    assert payload["timestamp"]
    assert fragment in payload["error"], payload


async def test_validation_errors_name_each_field(api: httpx.AsyncClient) -> None:
    response = await api.post("/auth/register", json={"email": "bad", "password": "x"})
    fields = {detail["field"] for detail in response.json()["details"]}
    assert fields == {"body.email", "body.password"}


async def test_bad_bearer_on_an_open_route_is_refused(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/api/contact",
        json={"name": "Ada", "email": new_email(), "message": "hi"},
        headers=bearer("not-a-token"),
    )
    assert response.status_code == 401


async def test_health_and_ready(api: httpx.AsyncClient, worker: Worker) -> None:
    assert (await api.get("/health")).json() == {"status": "ok", "checks": {}}

    async def answered_ready() -> httpx.Response | None:
        ready = await api.get("/ready")
        return ready if ready.status_code == 200 else None

    ready = (await eventually(answered_ready, what="the worker's first poll")).json()
    assert ready["status"] == "ok"
    assert ready["checks"] == {"database": "ok", "temporal": "ok", "worker": "ok"}
    assert set(ready["latency_ms"]) == set(ready["checks"])
    assert all(isinstance(ms, float) and ms >= 0 for ms in ready["latency_ms"].values())


async def test_ready_is_503_until_a_worker_polls_the_task_queue(
    api: httpx.AsyncClient, temporal: Client, settings: Settings, engine: AsyncEngine
) -> None:
    ready = await api.get("/ready")
    assert ready.status_code == 503
    assert ready.json()["checks"]["worker"].startswith("failed: no worker polled")
    assert {ready.json()["checks"][name] for name in ("database", "temporal")} == {"ok"}
    # A load balancer's probe leaves the worker out: this process serves without one.
    serving = await api.get("/ready", params={"worker": "false"})
    assert serving.status_code == 200 and serving.json()["checks"] == {"database": "ok", "temporal": "ok"}
    async with build_worker(temporal, settings, engine):

        async def answered_ready() -> bool:
            return (await api.get("/ready")).status_code == 200

        await eventually(answered_ready, what="/ready to see the worker")


async def test_ready_checks_redis_when_configured(make_app: AppFactory, redis_url: str) -> None:
    async with serve(make_app(redis_url=redis_url)) as api:
        ready = (await api.get("/ready")).json()
    assert ready["checks"]["redis"] == "ok"
    assert ready["latency_ms"]["redis"] >= 0


async def test_ready_is_503_when_the_database_is_unreachable(make_app: AppFactory) -> None:
    app = make_app(database_url="postgresql+psycopg://nobody@127.0.0.1:1/none")
    async with serve(app) as api:
        ready = await api.get("/ready")
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"].startswith("failed")
    assert ready.json()["checks"]["temporal"] == "ok"


async def test_cors_allows_credentials_only_for_configured_origins(make_app: AppFactory) -> None:
    async with serve(make_app(cors_origins=["https://app.statex.example"])) as api:
        preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
        allowed = await api.options("/auth/login", headers={"Origin": "https://app.statex.example", **preflight})
        refused = await api.options("/auth/login", headers={"Origin": "https://evil.example", **preflight})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.statex.example"
    assert allowed.headers["access-control-allow-credentials"] == "true"
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers


async def test_production_hides_internal_error_messages(make_app: AppFactory) -> None:
    app = make_app(environment="production", jwt_secret="y" * 40)

    @app.get("/explode")
    async def explode() -> None:
        raise RuntimeError("database password is hunter2")

    async with serve(app) as api:
        response = await api.get("/explode")
    assert response.status_code == 500
    assert response.json()["error"] == "Internal Server Error"
    assert "hunter2" not in response.text


async def test_openapi_documents_every_route_with_typed_bodies(api: httpx.AsyncClient) -> None:
    schema = (await api.get("/openapi.json")).json()
    expected = {
        ("post", "/auth/register"),
        ("post", "/auth/login"),
        ("post", "/auth/refresh"),
        ("post", "/auth/logout"),
        ("get", "/auth/me"),
        ("post", "/api/contact"),
        ("get", "/health"),
        ("get", "/ready"),
    }
    documented = {(method, path) for path, item in schema["paths"].items() for method in item}
    assert expected <= documented
    for method, path in expected:
        operation = schema["paths"][path][method]
        success = next(code for code in operation["responses"] if code.startswith("2"))
        if success != "204":
            assert operation["responses"][success]["content"]["application/json"]["schema"], (method, path)
        if method == "post":
            assert operation["requestBody"]["content"]["application/json"]["schema"]["$ref"], path
    assert (await api.get("/docs")).status_code == 200


async def test_a_revoked_user_cannot_use_contact_as_themselves(api: httpx.AsyncClient) -> None:
    account = await register_and_login(api)
    await api.post("/auth/logout", json={"refresh_token": account["refresh_token"]})
    response = await api.post(
        "/api/contact",
        json={"name": "Ada", "email": account["email"], "message": "hi"},
        headers=bearer(account["access_token"]),
    )
    assert response.status_code == 401


@pytest.mark.parametrize("origin", ["http://localhost:5173", "http://127.0.0.1:3000", "http://localhost:4200"])
async def test_development_allows_the_common_dev_servers(make_app: AppFactory, origin: str) -> None:
    async with serve(make_app(cors_origins=None, environment="development")) as api:
        preflight = await api.options("/auth/me", headers={"Origin": origin, "Access-Control-Request-Method": "GET"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == origin


def test_production_allows_only_the_configured_origins() -> None:
    production = {"environment": "production", "jwt_secret": "x" * 40, "payload_keys": PAYLOAD_KEYS}
    assert Settings(_env_file=None, **production).effective_cors_origins == []  # type: ignore[call-arg, arg-type]
    configured = Settings(_env_file=None, **production, cors_origins=["https://a.example"])  # type: ignore[call-arg, arg-type]
    assert configured.effective_cors_origins == ["https://a.example"]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_reference_no_outside_host_and_their_assets_are_served(api: httpx.AsyncClient, page: str) -> None:
    html = (await api.get(page)).text
    assert "Statex API" in html
    assert not re.findall(r"""(?:src|href)=["']?(?:https?:)?//""", html), "an asset from another host"
    assets = re.findall(r"""["'](/docs-assets/[^"']+)["']""", html)
    assert assets
    for asset in assets:
        response = await api.get(asset)
        assert response.status_code == 200 and response.content, asset


async def test_the_openapi_names_its_server_and_describes_its_tags(make_app: AppFactory) -> None:
    schema = make_app(public_api_url="https://api.statex.example").openapi()
    assert schema["servers"][0]["url"] == "https://api.statex.example"
    used = {tag for item in schema["paths"].values() for op in item.values() for tag in op.get("tags", [])}
    described = {tag["name"]: tag["description"] for tag in schema["tags"]}
    assert used <= described.keys() and all(described.values())


@pytest.mark.parametrize(
    ("content_type", "sent"),
    [
        ("text/plain", "Content-Type 'text/plain'"),
        ("application/x-www-form-urlencoded", "Content-Type 'application/x-www-form-urlencoded'"),
        (None, "no Content-Type"),
    ],
)
async def test_a_json_body_with_another_content_type_is_415_naming_the_accepted_types(
    api: httpx.AsyncClient, content_type: str | None, sent: str
) -> None:
    body = b'{"email": "a@example.com", "password": "long enough"}'
    headers = {"Content-Type": content_type} if content_type else {}
    response = await api.post("/auth/login", content=body, headers=headers)  # raw bytes: httpx adds no type

    assert response.status_code == 415, response.text
    payload = response.json()
    assert (payload["success"], payload["code"]) == (False, 415) and payload["timestamp"]
    assert "application/json" in payload["error"] and "+json" in payload["error"]
    assert sent in payload["error"]


async def test_a_json_body_of_the_wrong_shape_is_still_422(api: httpx.AsyncClient) -> None:
    response = await api.post("/auth/login", json=["a@example.com", "long enough"])
    assert response.status_code == 422, response.text
    assert response.json()["details"][0]["field"] == "body"


async def test_malformed_json_is_reported_by_line_and_column(api: httpx.AsyncClient) -> None:
    body = b'{\n  "email": "a@example.com",\n  "password": "long enough"\n  "name": "Ada"\n}'
    response = await api.post("/auth/register", content=body, headers={"Content-Type": "application/json"})

    assert response.status_code == 422, response.text
    payload = response.json()
    assert payload["details"] == [
        {"field": "body", "message": "Invalid JSON at line 4, column 3: Expecting ',' delimiter"}
    ]
    assert payload["error"] == "Invalid request: body: Invalid JSON at line 4, column 3: Expecting ',' delimiter"
