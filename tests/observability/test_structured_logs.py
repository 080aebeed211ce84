"""Structured logs: one JSON object per line, a request id from the request through its workflow and
activities, the access line, and no secret in any line."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from fakes.stripe_emulator import SECRET_KEY, running_localstripe
from helpers import bearer, eventually, register_and_login
from payload_keys import PAYLOAD_KEYS
from payments_support import checkout, payment_stack, signed_stripe_event, with_gateway
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.worker import Worker

from activities.storage import sign_download
from models.types import utcnow
from observability.logs import JsonFormatter, TextFormatter, build_handler
from observability.redaction import RedactCredentials
from settings import Settings
from workflows.contact import ContactWorkflow

MESSAGE = {"name": "Ada Lovelace", "email": "ada@example.com", "message": "I have an idea for an app."}


class JsonLines:
    """Every record that reaches the root logger, formatted as production formats it."""

    def __init__(self) -> None:
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.setFormatter(JsonFormatter())
        self.handler.addFilter(RedactCredentials())

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines()]

    def with_request_id(self, request_id: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("request_id") == request_id]


@pytest.fixture
def json_logs() -> Iterator[JsonLines]:
    captured, root = JsonLines(), logging.getLogger()
    level = root.level
    root.addHandler(captured.handler)
    root.setLevel(logging.INFO)
    try:
        yield captured
    finally:
        root.removeHandler(captured.handler)
        root.setLevel(level)


def test_every_line_is_one_json_object_with_the_basic_fields(json_logs: JsonLines) -> None:
    log = logging.getLogger("statex.test")
    log.info("plain %s", "line", extra={"bucket": "ai"})
    try:
        raise ValueError("boom\nwith a second line")
    except ValueError:
        log.exception("failed")
    plain, failed = json_logs.lines()  # two records, two lines: the traceback stays inside its line
    assert {"time", "level", "logger", "message"} <= plain.keys()
    assert (plain["level"], plain["logger"], plain["message"]) == ("INFO", "statex.test", "plain line")
    assert plain["bucket"] == "ai"
    assert failed["level"] == "ERROR" and "ValueError: boom" in failed["exception"]


def test_extras_with_a_sensitive_name_or_a_credential_are_filtered(json_logs: JsonLines) -> None:
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    logging.getLogger("statex.test").warning(
        "seen", extra={"password": "hunter2-secret", "url": f"/api/files/x?token={token}", "note": f"Bearer {token}"}
    )
    assert token not in json_logs.text and "hunter2-secret" not in json_logs.text
    (line,) = json_logs.lines()
    assert line["password"] == "[Filtered]" and line["url"] == "/api/files/x?token=[Filtered]"


def test_log_format_is_json_in_production_and_text_elsewhere() -> None:
    assert Settings(_env_file=None, environment="test").effective_log_format == "text"  # type: ignore[call-arg]
    production = Settings(_env_file=None, environment="production", jwt_secret="x" * 48, payload_keys=PAYLOAD_KEYS)  # type: ignore[call-arg]
    assert production.effective_log_format == "json"
    assert isinstance(build_handler("json").formatter, JsonFormatter)
    assert isinstance(build_handler("text").formatter, TextFormatter)


async def _contact(api: httpx.AsyncClient, temporal: Client, headers: dict[str, str]) -> tuple[str, str]:
    response = await api.post("/api/contact", json=MESSAGE, headers=headers)
    assert response.status_code == 202, response.text
    workflow_id = response.json()["workflow_id"]
    await temporal.get_workflow_handle_for(ContactWorkflow.run, workflow_id).result()
    return response.headers["X-Request-ID"], workflow_id


@pytest.mark.parametrize("sent", ["client-chose-this.id_1", None])
async def test_the_request_id_reaches_the_api_line_the_workflow_and_its_activities(
    api: httpx.AsyncClient, temporal: Client, worker: Worker, json_logs: JsonLines, sent: str | None
) -> None:
    request_id, workflow_id = await _contact(api, temporal, {"X-Request-ID": sent} if sent else {})
    if sent:
        assert request_id == sent
    else:
        assert 16 <= len(request_id) <= 64

    async def all_logged() -> list[dict[str, Any]] | None:
        lines = json_logs.with_request_id(request_id)
        loggers = {line["logger"] for line in lines}
        return lines if {"statex.access", "temporalio.workflow", "temporalio.activity"} <= loggers else None

    lines = await eventually(all_logged, what="the request's API, workflow and activity lines")
    (access,) = [line for line in lines if line["logger"] == "statex.access"]
    assert access["route"] == "/api/contact" and access["status"] == 202 and access["method"] == "POST"
    assert isinstance(access["duration_ms"], float)
    assert access["workflow_id"] == workflow_id and access["workflow_type"] == "ContactWorkflow"
    assert not [line for line in lines if line["logger"] == "services.temporal"]  # one line, not two
    temporal_lines = [line for line in lines if line["logger"].startswith("temporalio.")]
    assert all(line["workflow_id"] == workflow_id for line in temporal_lines)
    assert sum(line["logger"] == "temporalio.activity" for line in temporal_lines) == 2  # two emails sent
    assert MESSAGE["email"] not in json_logs.text


@pytest.mark.parametrize("insane", [b"x" * 65, b"two\tparts", b"", b"forged\x1b[31m", b"a b", "ünïcode".encode()])
async def test_an_insane_request_id_is_replaced(api: httpx.AsyncClient, json_logs: JsonLines, insane: bytes) -> None:
    response = await api.get("/health", headers={b"X-Request-ID": insane})
    echoed = response.headers["X-Request-ID"]
    assert echoed.encode() != insane and 16 <= len(echoed) <= 64 and echoed.isalnum()
    (access,) = [line for line in json_logs.with_request_id(echoed) if line["logger"] == "statex.access"]
    assert access["route"] == "/health" and access["status"] == 200


async def test_every_answer_has_a_request_id_even_an_unmatched_route(api: httpx.AsyncClient) -> None:
    first, second = await api.get("/nowhere"), await api.get("/nowhere")
    assert first.status_code == 404 and first.headers["X-Request-ID"] != second.headers["X-Request-ID"]


PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
WEBHOOK_SECRET = "whsec_statex_logs_secret"


async def test_no_line_holds_a_password_token_or_key(
    settings: Settings, temporal: Client, engine: AsyncEngine, json_logs: JsonLines
) -> None:
    """Everything logged while signing up, in, refreshing, reading /me, failing a sign-in, uploading and
    downloading by token, and paying by Stripe (through localstripe, its signed webhook too) is scanned for
    the actual secrets used."""
    secrets: set[str] = {WEBHOOK_SECRET, SECRET_KEY, settings.jwt_secret.get_secret_value()}
    with running_localstripe() as localstripe_url:
        stripe_settings = with_gateway(
            settings,
            stripe_secret_key=SecretStr(SECRET_KEY),
            stripe_webhook_secret=SecretStr(WEBHOOK_SECRET),
            stripe_api_base=localstripe_url,
        )
        async with payment_stack(stripe_settings, temporal, engine) as http:
            account = await register_and_login(http, password="a password nobody logs 7")
            secrets |= {account["password"], account["access_token"], account["refresh_token"]}
            refused = await http.post("/auth/login", json={"email": account["email"], "password": "wrong password 9"})
            assert refused.status_code == 401
            secrets.add("wrong password 9")
            refreshed = (await http.post("/auth/refresh", json={"refresh_token": account["refresh_token"]})).json()
            secrets |= {refreshed["access_token"], refreshed["refresh_token"]}
            token = refreshed["access_token"]
            assert (await http.get("/auth/me", headers=bearer(token))).status_code == 200
            uploaded = await http.post(
                "/api/files/upload", files={"file": ("a.png", PNG, "image/png")}, headers=bearer(token)
            )
            file_id = uploaded.json()["fileId"]
            link = sign_download(settings, uuid.UUID(file_id), utcnow() + timedelta(hours=1))
            secrets.add(link)
            assert (await http.get(f"/api/files/{file_id}", params={"token": link})).content == PNG
            payment = (await checkout(http, token, {"tier": "PREMIUM", "gateway": "STRIPE"}))["payment"]
            secrets.add(payment["next_action"]["client_secret"])
            event = {
                "id": f"evt_{uuid.uuid4().hex}",
                "type": "payment_intent.succeeded",
                "data": {"object": {"id": payment["gateway_id"], "object": "payment_intent", "status": "succeeded"}},
            }
            body, headers = signed_stripe_event(event, WEBHOOK_SECRET)
            secrets.add(headers["Stripe-Signature"])
            await http.post("/api/payments/webhooks/STRIPE", content=body, headers=headers)
            forged, forged_headers = signed_stripe_event(event, "whsec_not_ours")
            rejected = await http.post("/api/payments/webhooks/STRIPE", content=forged, headers=forged_headers)
            assert rejected.status_code == 400

    lines = json_logs.lines()
    loggers = {line["logger"] for line in lines}
    assert {"statex.access", "services.accounts", "services.temporal", "services.payments"} <= loggers
    (refusal,) = [line for line in lines if line["logger"] == "services.accounts"]
    assert refusal["user_id"] == account["user"]["id"] and account["email"] not in json_logs.text
    assert any(line.get("route") == "/auth/me" and line.get("user_id") == account["user"]["id"] for line in lines)
    leaked = {secret for secret in secrets if secret in json_logs.text}
    assert not leaked, f"secrets in the logs: {leaked}"


def test_uvicorns_colour_copy_of_a_message_stays_out_of_json_lines() -> None:
    """Uvicorn logs some lines with `extra={"color_message": ...}`, the message with ANSI colour codes for its own
    terminal formatter: in a JSON line it is noise, and escape codes."""
    captured, uvicorn_log = JsonLines(), logging.getLogger("uvicorn.error")
    uvicorn_log.addHandler(captured.handler)
    level, uvicorn_log.level = uvicorn_log.level, logging.INFO
    try:
        uvicorn.Config(
            app="api.app:create_app", host="127.0.0.1", port=0, log_config=None
        ).bind_socket().close()  # logs "running on"
    finally:
        uvicorn_log.removeHandler(captured.handler)
        uvicorn_log.setLevel(level)
    (line,) = captured.lines()
    assert line["message"].startswith("Uvicorn running on http://127.0.0.1:")
    assert "color_message" not in line
    assert "\x1b" not in json.dumps(line, ensure_ascii=False)
