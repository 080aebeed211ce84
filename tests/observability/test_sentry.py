"""Sentry: failures in the API and the worker reach a (loopback) Sentry, and no secret goes with them.

A small HTTP server stands in for sentry.io and keeps every envelope the SDK sends. The secrets are
searched for in the raw decoded bytes, so one hidden anywhere (request, headers, frames, breadcrumbs,
contexts) is found; and the same events must carry the harmless data that makes them useful.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():  # the sandbox re-imports this module for the workflow
    import httpx
    import pytest
    import sentry_sdk
    from fastapi import FastAPI
    from helpers import eventually, serve
    from pydantic import BaseModel, SecretStr
    from temporalio.client import Client, WorkflowFailureError
    from temporalio.worker import Worker

    from observability.interceptors import SentryInterceptor, worth_reporting
    from observability.redaction import SENSITIVE_KEYS
    from observability.sentry import init_sentry
    from settings import Settings

# The tokens are made fresh each run, so no source line that Sentry quotes can hold one; the card is
# Stripe's test number, defined far from any frame. A hit anywhere in an envelope is a leak.
PASSWORD = f"hunter2-{uuid.uuid4().hex}"
CARD_NUMBER = "4242424242424242"
CVC = "737"
API_KEY = f"sk_live_{uuid.uuid4().hex}"
REFRESH_TOKEN = f"rt_{uuid.uuid4().hex}"
BEARER = f"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ{uuid.uuid4().hex}.c2lnbmF0dXJl"
SESSION_COOKIE = f"sess_{uuid.uuid4().hex}"
HEADER_API_KEY = f"xak_{uuid.uuid4().hex}"
QUERY_TOKEN = f"qt_{uuid.uuid4().hex}"
SECRETS = (PASSWORD, CARD_NUMBER, API_KEY, REFRESH_TOKEN, BEARER, SESSION_COOKIE, HEADER_API_KEY, QUERY_TOKEN)

Event = dict[str, Any]


# --- a loopback Sentry ---------------------------------------------------------------------------------


def parse_envelope(raw: bytes) -> list[tuple[dict[str, Any], bytes]]:
    """After the envelope header line: item header lines, each followed by `length` bytes or one line."""
    _, _, rest = raw.partition(b"\n")
    items: list[tuple[dict[str, Any], bytes]] = []
    while rest.strip():
        line, _, rest = rest.partition(b"\n")
        header = json.loads(line)
        if "length" in header:
            payload, rest = rest[: header["length"]], rest[header["length"] :].removeprefix(b"\n")
        else:
            payload, _, rest = rest.partition(b"\n")
        items.append((header, payload))
    return items


def decompress(body: bytes, encoding: str) -> bytes:
    if encoding in ("", "identity"):
        return body
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "br":  # only when the SDK found the brotli module, so it is importable here too
        import brotli  # type: ignore[import-not-found]

        return bytes(brotli.decompress(body))
    raise AssertionError(f"unexpected Content-Encoding {encoding!r}")


class LoopbackSentry:
    """Answers 200 to envelope POSTs on a free loopback port and keeps their decoded bodies."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.bodies: list[bytes] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _envelope_handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def dsn(self) -> str:
        return f"http://publickey@127.0.0.1:{self._server.server_address[1]}/1"

    def keep(self, body: bytes) -> None:
        with self.lock:
            self.bodies.append(body)

    def raw(self) -> str:
        with self.lock:
            return b"\n".join(self.bodies).decode("utf-8", errors="replace")

    def events(self) -> list[Event]:
        with self.lock:
            bodies = list(self.bodies)
        return [
            json.loads(payload)
            for body in bodies
            for header, payload in parse_envelope(body)
            if header.get("type") == "event"
        ]

    async def event(self, matches: Callable[[Event], bool], what: str) -> Event:
        """Flush the SDK, then poll until a matching event has arrived."""

        async def arrived() -> Event | None:
            await asyncio.to_thread(sentry_sdk.flush, 2)
            return next((event for event in self.events() if matches(event)), None)

        return await eventually(arrived, within=20, what=what)

    def assert_no_secrets(self) -> None:
        raw = self.raw()
        leaked = [secret for secret in SECRETS if secret in raw]
        assert not leaked, f"secrets reached Sentry: {leaked}"


def _envelope_handler(sentry: LoopbackSentry) -> type[BaseHTTPRequestHandler]:
    """Built at run time: the workflow sandbox, which re-imports this module, refuses http.server classes."""

    class EnvelopeHandler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            found = self.path.startswith("/api/1/envelope/")
            if found:
                sentry.keep(decompress(body, self.headers.get("Content-Encoding", "")))
            self.send_response(200 if found else 404)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def do_GET(self) -> None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return EnvelopeHandler


@pytest.fixture
def sentry() -> Iterator[LoopbackSentry]:
    """Afterwards the SDK is closed and the scopes cleared, so no later test sends or inherits anything."""
    server = LoopbackSentry()
    try:
        yield server
    finally:
        sentry_sdk.get_client().close(timeout=2)
        sentry_sdk.get_global_scope().set_client(None)
        sentry_sdk.get_isolation_scope().clear()
        sentry_sdk.get_current_scope().clear()
        server.close()


def strings(value: Any) -> Iterator[str]:
    """Every key and string value in a parsed event."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)
    elif isinstance(value, str):
        yield value


def raised(exception_type: str) -> Callable[[Event], bool]:
    def matches(event: Event) -> bool:
        return any(exc.get("type") == exception_type for exc in event.get("exception", {}).get("values", []))

    return matches


# --- the API -------------------------------------------------------------------------------------------


class Card(BaseModel):
    number: str
    cvc: str


class CheckoutBody(BaseModel):
    name: str
    password: str
    card: Card
    card_number: str
    cvc: str
    api_key: str
    refresh_token: str


async def failing_checkout(body: CheckoutBody) -> None:
    """Holds secrets in locals, as real code does, then fails with a harmless message."""
    password = body.password
    card_number = body.card.number
    if password and card_number:
        raise RuntimeError(f"checkout failed for {body.name}")


async def test_api_error_reaches_sentry_without_secrets(
    make_app: Callable[..., FastAPI], sentry: LoopbackSentry
) -> None:
    app = make_app(sentry_dsn=SecretStr(sentry.dsn), environment="production")
    app.add_api_route("/boom", failing_checkout, methods=["POST"])

    async with serve(app) as http:
        response = await http.post(
            "/boom",
            params={"token": QUERY_TOKEN, "page": "2"},
            json={
                "name": "Ada",
                "password": PASSWORD,
                "card": {"number": CARD_NUMBER, "cvc": CVC},
                "card_number": CARD_NUMBER,
                "cvc": CVC,
                "api_key": API_KEY,
                "refresh_token": REFRESH_TOKEN,
            },
            headers={
                "Authorization": f"Bearer {BEARER}",
                "Cookie": f"session={SESSION_COOKIE}",
                "X-Api-Key": HEADER_API_KEY,
                "X-Request-Id": "req-visible",
            },
        )
    assert response.status_code == 500
    assert response.json()["success"] is False
    assert response.json()["code"] == 500
    assert response.json()["error"] == "Internal Server Error"

    event = await sentry.event(raised("RuntimeError"), "the API error event")
    assert event["environment"] == "production"
    assert event["tags"]["component"] == "api"
    assert event["transaction"] == "/boom"
    request = event["request"]
    assert request["url"] == "http://testserver/boom"
    assert request["data"]["name"] == "Ada"
    assert request["data"]["card"] == request["data"]["password"] == "[Filtered]"
    assert request["headers"]["x-request-id"] == "req-visible"
    assert request["headers"]["authorization"] == request["headers"]["x-api-key"] == "[Filtered]"
    (exception,) = event["exception"]["values"]
    assert exception["value"] == "checkout failed for Ada"
    assert exception["stacktrace"]["frames"][-1]["function"] == "failing_checkout"
    assert CVC not in set(strings(event))
    sentry.assert_no_secrets()


# --- the worker ----------------------------------------------------------------------------------------


class ChargeRequest(BaseModel):
    customer: str
    api_key: str
    card_number: str
    gateway_url: str


@activity.defn(name="sentry_test_charge")
async def charge(request: ChargeRequest) -> None:
    """Calls a gateway with the key in the query string (a breadcrumb), then is refused for good."""
    api_key = request.api_key
    card_number = request.card_number
    async with httpx.AsyncClient() as http:
        await http.get(f"{request.gateway_url}/v1/customers/{request.customer}", params={"key": QUERY_TOKEN})
    if api_key and card_number:
        raise ApplicationError(f"gateway refused {request.customer}", type="ChargeRefused", non_retryable=True)


@workflow.defn(name="SentryTestCharge")
class ChargeWorkflow:
    @workflow.run
    async def run(self, request: ChargeRequest) -> None:
        await workflow.execute_activity(
            charge,
            request,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_attempts=1),
        )


@pytest.fixture
async def charging_worker(
    temporal: Client, settings: Settings, sentry: LoopbackSentry
) -> AsyncIterator[Callable[[str], Awaitable[str]]]:
    """The worker with Sentry on; yields `charge_for(customer)`, which runs a failing charge to the end."""
    assert init_sentry(settings.model_copy(update={"sentry_dsn": SecretStr(sentry.dsn)}), component="worker")
    task_queue = f"sentry-{uuid.uuid4().hex[:8]}"

    async def charge_for(customer: str) -> str:
        request = ChargeRequest(customer=customer, api_key=API_KEY, card_number=CARD_NUMBER, gateway_url=sentry.url)
        handle = await temporal.start_workflow(
            ChargeWorkflow.run, request, id=f"sentry-charge-{uuid.uuid4()}", task_queue=task_queue
        )
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        return handle.id

    async with Worker(
        temporal,
        task_queue=task_queue,
        workflows=[ChargeWorkflow],
        activities=[charge],
        interceptors=[SentryInterceptor()],
    ):
        yield charge_for


def refused(customer: str) -> Callable[[Event], bool]:
    def matches(event: Event) -> bool:
        values = event.get("exception", {}).get("values", [])
        return any(exc.get("value") == f"gateway refused {customer}" for exc in values)

    return matches


def gateway_calls(event: Event) -> list[dict[str, Any]]:
    """The data of the event's outgoing-HTTP breadcrumbs."""
    return [crumb["data"] for crumb in event["breadcrumbs"]["values"] if crumb.get("category") == "httplib"]


async def test_activity_failure_reaches_sentry_without_secrets(
    charging_worker: Callable[[str], Awaitable[str]], sentry: LoopbackSentry
) -> None:
    workflow_id = await charging_worker("Ada")

    event = await sentry.event(refused("Ada"), "the activity failure event")
    assert event["tags"]["component"] == "worker"
    assert event["tags"]["temporal.activity"] == "sentry_test_charge"
    assert event["tags"]["temporal.workflow"] == "SentryTestCharge"
    assert event["contexts"]["temporal"] == {"workflow_id": workflow_id, "activity_id": "1", "attempt": 1}
    (exception,) = event["exception"]["values"]
    assert exception["type"] == "ApplicationError"
    assert exception["stacktrace"]["frames"][-1]["function"] == "charge"
    (gateway_call,) = gateway_calls(event)
    assert gateway_call["url"] == f"{sentry.url}/v1/customers/Ada"
    assert gateway_call["http.query"] == "[Filtered]"
    sentry.assert_no_secrets()


async def test_activity_failure_carries_only_its_own_breadcrumbs(
    charging_worker: Callable[[str], Awaitable[str]], sentry: LoopbackSentry
) -> None:
    await charging_worker("Ada")
    await charging_worker("Grace")

    event = await sentry.event(refused("Grace"), "the second activity failure event")
    assert [call["url"] for call in gateway_calls(event)] == [f"{sentry.url}/v1/customers/Grace"]


def test_only_lasting_or_hopeless_activity_failures_are_reported() -> None:
    hopeless = ApplicationError("bad request", type="AIBadRequest", non_retryable=True)
    passing = ApplicationError("rate limited", type="AIRateLimited")
    assert worth_reporting(hopeless, attempt=1)
    assert not worth_reporting(passing, attempt=1)
    assert not worth_reporting(RuntimeError("timeout"), attempt=2)
    assert worth_reporting(RuntimeError("timeout"), attempt=3)
    assert not worth_reporting(RuntimeError("timeout"), attempt=4)  # once per activity, not every retry


def test_the_spelled_out_deny_list_still_holds_every_key_sentry_scrubs_by_default() -> None:
    """observability spells sentry-sdk's defaults out (so the API need not import the SDK); an SDK upgrade that adds
    a key must not leave our log redaction and scrubbing behind."""
    from sentry_sdk.scrubber import DEFAULT_DENYLIST, DEFAULT_PII_DENYLIST

    assert set(DEFAULT_DENYLIST) | set(DEFAULT_PII_DENYLIST) <= SENSITIVE_KEYS
