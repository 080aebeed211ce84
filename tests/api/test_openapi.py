"""The OpenAPI document says what the API does, so that generated clients are usable as they come."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from conftest import AppFactory
from pydantic import BaseModel

from models.api.auth import (
    AddressVerified,
    EmailSent,
    ForgotPasswordRequest,
    LoginRequest,
    RegisterRequest,
    RegistrationAccepted,
    ResetPasswordRequest,
    TokenPair,
    UserPublic,
    VerifyRequest,
)
from models.api.contact import ContactAccepted, ContactRequest
from models.api.files import FileInfo, UploadedFile
from models.api.payments import CheckoutRequest, CheckoutResponse
from models.api.prototypes import ApprovalRequest, PrototypeAccepted, PrototypeRequest, PrototypeView

OPERATION_ID = re.compile(r"^[a-z]+(-[a-z]+)+$")
ENVELOPE = "#/components/schemas/ErrorResponse"
RATE_LIMITED = "#/components/schemas/RateLimitResponse"
UNCHECKED = {"/health", "/ready", "/openapi.json"}
WEBHOOKS = "/api/payments/webhooks/"  # not rate limited (the signature is the gate); the path names a gateway
NOT_COUNTED = ("/api/capabilities", WEBHOOKS)


@pytest.fixture
def schema(make_app: AppFactory) -> dict[str, Any]:
    return make_app().openapi()


def operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method, path, op) for path, item in schema["paths"].items() for method, op in item.items()]


def test_operation_ids_are_readable_and_unique(schema: dict[str, Any]) -> None:
    ids = [op["operationId"] for _, _, op in operations(schema)]
    assert len(ids) == len(set(ids))
    unreadable = [operation_id for operation_id in ids if not OPERATION_ID.match(operation_id)]
    assert not unreadable, unreadable
    assert {"auth-register", "auth-login", "auth-me", "contact-submit"} <= set(ids)


def test_every_error_a_route_can_answer_is_documented_with_the_envelope(schema: dict[str, Any]) -> None:
    missing: list[str] = []
    for method, path, op in operations(schema):
        if path in UNCHECKED:
            continue
        responses = op["responses"]
        webhook = path.startswith(WEBHOOKS)
        expected = set() if path.startswith(NOT_COUNTED) else {"429"}
        if op.get("security"):
            expected.add("401")
        if op.get("requestBody") or op.get("parameters"):
            expected.add("422")
        if "{" in path and not webhook:
            expected.add("404")
        for code in sorted(expected - responses.keys()):
            missing.append(f"{method.upper()} {path}: {code}")
        for code, response in responses.items():
            if code[0] in "45" and code != "500":
                ref = response["content"]["application/json"]["schema"]["$ref"]
                assert ref in (ENVELOPE, RATE_LIMITED), (method, path, code)
    assert not missing, missing


def test_accepted_and_successful_bodies_are_declared(schema: dict[str, Any]) -> None:
    for method, path, op in operations(schema):
        for code, response in op["responses"].items():
            if code.startswith("2") and code != "204" and "content" in response:
                content = response["content"]
                assert any(media.get("schema") for media in content.values()), (method, path, code)


EXAMPLED_OPERATIONS = (
    "auth-register",
    "auth-login",
    "auth-me",
    "auth-forgot-password",
    "auth-reset-password",
    "auth-verify",
    "files-upload",
    "files-list",
    "prototypes-submit",
    "prototypes-get",
    "prototypes-approve",
    "payments-checkout",
    "contact-submit",
)
EXAMPLED_MODELS: dict[str, type[BaseModel]] = {
    model.__name__: model
    for model in (
        RegisterRequest,
        RegistrationAccepted,
        UserPublic,
        ForgotPasswordRequest,
        EmailSent,
        ResetPasswordRequest,
        AddressVerified,
        VerifyRequest,
        LoginRequest,
        TokenPair,
        UploadedFile,
        FileInfo,
        PrototypeRequest,
        PrototypeAccepted,
        PrototypeView,
        ApprovalRequest,
        CheckoutRequest,
        CheckoutResponse,
        ContactRequest,
        ContactAccepted,
    )
}


def json_bodies(op: dict[str, Any]) -> list[str]:
    """The component names of an operation's JSON request body and successful JSON responses (a list's items)."""
    contents = [op.get("requestBody", {}).get("content", {})]
    contents += [response.get("content", {}) for code, response in op["responses"].items() if code.startswith("2")]
    schemas = [content["application/json"]["schema"] for content in contents if "application/json" in content]
    refs = [schema.get("items", schema).get("$ref", "") for schema in schemas]
    return [ref.removeprefix("#/components/schemas/") for ref in refs if ref]


def test_the_main_operations_show_examples_that_validate(schema: dict[str, Any]) -> None:
    by_id = {op["operationId"]: op for _, _, op in operations(schema)}
    names = {name for operation_id in EXAMPLED_OPERATIONS for name in json_bodies(by_id[operation_id])}
    assert names == EXAMPLED_MODELS.keys()  # each request and answer of the main operations: no model left out
    for name in sorted(names):
        shown = schema["components"]["schemas"][name].get("examples")
        assert shown, f"{name} has no example in the OpenAPI document"
        for example in shown:  # as a client would send or receive it: JSON
            EXAMPLED_MODELS[name].model_validate_json(json.dumps(example))
