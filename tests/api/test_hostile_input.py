"""Every route, fed junk: malformed JSON, wrong shapes, wrong types, forged ids. Never a 5xx, always the envelope."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from conftest import AppFactory
from helpers import bearer, register_and_login, serve
from pydantic import SecretStr

JUNK_BODIES: list[tuple[bytes, str]] = [
    (b"", "application/json"),
    (b"{", "application/json"),
    (b"[]", "application/json"),
    (b"null", "application/json"),
    (b'"a string"', "application/json"),
    (b'{"\\u0000": "\\ud800"}', "application/json"),
    (b"\xff\xfe\x00garbage", "application/json"),
    (b"a=1&b=2", "application/x-www-form-urlencoded"),
    (b"--x\r\n\r\n", "multipart/form-data; boundary=x"),
    (b"<xml/>", "text/xml"),
]
JUNK_IDS = ["not-a-uuid", "..%2F..%2Fetc%2Fpasswd", "%00", "9" * 200, str(uuid.uuid4())]
WRONG_VALUES: list[Any] = [None, [], {}, -1, 10**30, "x" * 20000, True, "\u0000"]


def concrete_paths(template: str) -> list[str]:
    if "{" not in template:
        return [template]
    return [_fill(template, junk) for junk in JUNK_IDS]


def _fill(path: str, value: str) -> str:
    parts = path.split("/")
    return "/".join(value if part.startswith("{") else part for part in parts)


def wrong_typed_bodies(schema: dict[str, Any], components: dict[str, Any]) -> list[dict[str, Any]]:
    """For a JSON body schema: each property set, in turn, to every value of the wrong kind."""
    if "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[-1]]
    properties = schema.get("properties", {})
    return [{name: value} for name in properties for value in WRONG_VALUES]


@pytest.fixture
async def hostile(make_app: AppFactory, worker: object) -> Any:
    # A worker polls, so /ready answers 200 (without one its 503 is the truth, not a failure to parse junk).
    # A transcriber is configured (never called: no junk gets that far) so that POST /api/ai/voice parses the junk;
    # without one it answers its documented 503 before reading a byte.
    app = make_app(
        rate_limit_enabled=False, openai_api_key=SecretStr("sk-unused"), openai_base_url="http://127.0.0.1:9/v1"
    )
    async with serve(app) as api:
        token = (await register_and_login(api))["access_token"]
        yield app, api, bearer(token)


async def test_no_route_answers_junk_with_a_server_error(hostile: Any) -> None:
    app, api, auth = hostile
    schema = app.openapi()
    components = schema.get("components", {}).get("schemas", {})
    failures: list[str] = []
    checked = 0
    for template, operations in schema["paths"].items():
        for method, operation in operations.items():
            json_schema = (
                operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
            )
            for path in concrete_paths(template):
                attempts: list[dict[str, Any]] = [
                    {"content": body, "headers": {"Content-Type": kind}} for body, kind in JUNK_BODIES
                ]
                attempts += [{"json": body} for body in wrong_typed_bodies(json_schema, components)]
                for attempt in attempts:
                    headers = {**auth, **attempt.pop("headers", {})}
                    response = await api.request(method.upper(), path, headers=headers, **attempt)
                    checked += 1
                    if response.status_code >= 500 or not _is_envelope_or_success(response):
                        failures.append(f"{method} {path} {attempt} -> {response.status_code} {response.text[:200]}")
    assert checked > 500
    assert failures == []


def _is_envelope_or_success(response: httpx.Response) -> bool:
    if response.status_code < 400:
        return True
    try:
        body = response.json()
    except ValueError:
        return False
    return body.get("success") is False and body.get("code") == response.status_code and bool(body.get("error"))


def _request_models() -> list[type[Any]]:
    """Every model a route takes as its JSON body, named by the OpenAPI document (so a new one is not forgotten)
    and found among the API's models."""
    import importlib
    import pkgutil

    from pydantic import BaseModel

    import models.api
    from api.app import create_app
    from settings import Settings

    schema = create_app(Settings(_env_file=None, environment="test")).openapi()  # type: ignore[call-arg]
    named = {
        content["schema"]["$ref"].rsplit("/", 1)[-1]
        for path in schema["paths"].values()
        for operation in path.values()
        for content in operation.get("requestBody", {}).get("content", {}).values()
        if "$ref" in content.get("schema", {})
    }
    classes: dict[str, type[Any]] = {}
    for module in pkgutil.iter_modules(models.api.__path__):
        for value in vars(importlib.import_module(f"models.api.{module.name}")).values():
            if isinstance(value, type) and issubclass(value, BaseModel):
                classes.setdefault(value.__name__, value)
    assert named <= classes.keys(), named - classes.keys()
    return [classes[name] for name in sorted(named)]


def test_every_boolean_in_a_request_body_is_strict() -> None:
    """`{"approve": "yes"}` is not true (pydantic's lax bool would take "yes", "on", 1): every bool a request
    body declares is StrictBool, JSON true or false only."""
    from pydantic import BaseModel

    def bools(model: type[BaseModel]) -> list[str]:
        lax = []
        for name, field in model.model_fields.items():
            if field.annotation is bool and not any(getattr(meta, "strict", False) for meta in field.metadata):
                lax.append(f"{model.__name__}.{name}")
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                lax += bools(field.annotation)
        return lax

    models = _request_models()
    assert {model.__name__ for model in models} >= {"ApprovalRequest", "PrototypeRequest", "ErasureRequest"}
    assert [name for model in models for name in bools(model)] == []


async def test_a_boolean_given_as_a_string_or_a_number_is_a_422(api: httpx.AsyncClient) -> None:
    account = await register_and_login(api)
    headers = bearer(account["access_token"])
    for value in ("yes", "true", "on", 1, 0, "1"):
        approval = await api.post(f"/api/prototypes/{uuid.uuid4()}/approval", json={"approve": value}, headers=headers)
        assert approval.status_code == 422, (value, approval.text)
        submitted = await api.post(
            "/api/ai/prototype", json={"idea": "A calculator.", "review_requirements": value}, headers=headers
        )
        assert submitted.status_code == 422, (value, submitted.text)
