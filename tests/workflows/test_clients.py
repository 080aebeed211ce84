"""Clients to outside systems are built once and reused, make one request per attempt (Temporal retries, not
the SDK), and are closed when the worker stops. Checked on the wire: the local servers count connections and
requests."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import uvicorn
from fakes.btcpay_server import API_KEY, STORE_ID, FakeBTCPay
from fakes.comgate_server import MERCHANT, SECRET, FakeComgate
from fakes.paypal_server import CLIENT_ID, CLIENT_SECRET, FakePayPal
from helpers import eventually
from payments_support import time_skipping_checkout, with_gateway
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.exceptions import ApplicationError

from activities.email import SesMailer
from activities.payments import build_gateway
from activities.storage import R2Storage
from models.enums import PaymentGateway, ServiceTier
from models.messages.email import EmailMessage
from models.messages.payments import CheckoutOrder
from settings import Settings

ONE_REQUEST = {"total_max_attempts": 1, "mode": "standard"}


class ConnectionLog:
    """An ASGI wrapper that notes the client address (host, port) of every request: one address per TCP
    connection, so two requests from one address went over one reused connection."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.peers: list[tuple[str, int]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.peers.append(tuple(scope["client"]))  # type: ignore[arg-type]
        await self.app(scope, receive, send)


@asynccontextmanager
async def served(app: Any) -> AsyncIterator[tuple[str, uvicorn.Server]]:
    """`app` under uvicorn on a free port; idle connections are kept for minutes, so only a client closing
    its connection makes one go away (uvicorn's default closes them after 5 s)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    host, port = listener.getsockname()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", timeout_keep_alive=600))
    task = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        await eventually(lambda: _started(server), what="uvicorn to start")
        yield f"http://{host}:{port}", server
    finally:
        server.should_exit = True
        await task
        listener.close()


async def _started(server: uvicorn.Server) -> bool:
    return server.started


def order(gateway: PaymentGateway, currency: str = "CZK") -> CheckoutOrder:
    return CheckoutOrder(
        payment_id=uuid.uuid4(),
        user_id=uuid.uuid4(),
        email="ada@example.com",
        tier=ServiceTier.PREMIUM,
        tier_name="Premium",
        gateway=gateway,
        amount_minor=99000,
        currency=currency,
        amount_display="990 CZK",
        return_url="https://statex.example/paid",
        cancel_url="https://statex.example/cancelled",
        expires_after=timedelta(minutes=30),
        poll_every=timedelta(hours=1),
        refund_window=timedelta(days=14),
        watch_refunds_for=timedelta(days=30),
    )


GATEWAY_FAKES: dict[PaymentGateway, Any] = {
    PaymentGateway.PAYPAL: lambda url: (
        FakePayPal(),
        {"paypal_api_base": url, "paypal_client_id": CLIENT_ID, "paypal_client_secret": SecretStr(CLIENT_SECRET)},
    ),
    PaymentGateway.CRYPTO_BTCPAY: lambda url: (
        FakeBTCPay(),
        {"btcpay_url": url, "btcpay_api_key": SecretStr(API_KEY), "btcpay_store_id": STORE_ID},
    ),
    PaymentGateway.COMGATE: lambda url: (
        FakeComgate(),
        {"comgate_api_base": url, "comgate_merchant": MERCHANT, "comgate_secret": SecretStr(SECRET)},
    ),
}


@pytest.mark.parametrize("gateway", list(GATEWAY_FAKES))
async def test_a_gateway_makes_every_call_over_one_reused_connection(
    gateway: PaymentGateway, settings: Settings
) -> None:
    fake, _ = GATEWAY_FAKES[gateway]("")
    log = ConnectionLog(fake.app)
    async with served(log) as (url, server):
        _, options = GATEWAY_FAKES[gateway](url)
        client = build_gateway(settings.model_copy(update=options), gateway)
        try:
            created = await client.create(order(gateway))
            await client.status(order(gateway).at_gateway(created.gateway_id))
            await client.status(order(gateway).at_gateway(created.gateway_id))
            assert len(log.peers) >= 3
            assert len(set(log.peers)) == 1, f"{len(set(log.peers))} connections for {len(log.peers)} requests"
            assert len(server.server_state.connections) == 1  # still open, for the next call
        finally:
            await client.aclose()
        await eventually(lambda: _closed(server), what="the gateway's connection to close")


async def _closed(server: uvicorn.Server) -> bool:
    return not server.server_state.connections


async def test_the_worker_closes_its_gateway_connections_when_it_stops(settings: Settings, engine: AsyncEngine) -> None:
    fake = FakeComgate()
    async with served(fake.app) as (url, server):
        comgate = with_gateway(
            settings, comgate_api_base=url, comgate_merchant=MERCHANT, comgate_secret=SecretStr(SECRET)
        )
        async with time_skipping_checkout(comgate, engine, PaymentGateway.COMGATE):
            await eventually(lambda: _has_payment(fake), what="the workflow to create the Comgate payment")
            assert len(server.server_state.connections) == 1  # the worker's pooled connection, kept for reuse
        await eventually(lambda: _closed(server), what="the worker to close its Comgate client")


async def _has_payment(fake: FakeComgate) -> bool:
    return bool(fake.payments)


# --- boto3: one request per attempt -------------------------------------------------------------------


class FailsOnce(ThreadingHTTPServer):
    """Answers the first request with a 500 (the provider's transient trouble) and every later one with
    `then`; counts the requests. boto3 is synchronous and runs in threads, so a threaded server is enough."""

    def __init__(self, then: tuple[int, dict[str, str], bytes]) -> None:
        self.requests = 0
        self.then = then
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _FailsOnceHandler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


class _FailsOnceHandler(BaseHTTPRequestHandler):
    server: FailsOnce

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.server.lock:
            self.server.requests += 1
            first = self.server.requests == 1
        status, headers, body = (
            (500, {"Content-Type": "application/xml"}, b"<Error><Code>InternalError</Code></Error>")
            if first
            else self.server.then
        )
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def fails_once(request: pytest.FixtureRequest) -> Iterator[FailsOnce]:
    server = FailsOnce(request.param)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def r2_at(settings: Settings, url: str) -> Settings:
    return settings.model_copy(
        update={
            "storage_backend": "r2",
            "r2_endpoint_url": url,
            "r2_bucket": "statex-files",
            "r2_access_key_id": SecretStr("testing"),
            "r2_secret_access_key": SecretStr("testing"),
        }
    )


def ses_at(settings: Settings, url: str) -> Settings:
    return settings.model_copy(
        update={
            "email_backend": "ses",
            "ses_endpoint_url": url,
            "aws_access_key_id": SecretStr("testing"),
            "aws_secret_access_key": SecretStr("testing"),
        }
    )


def test_boto3_clients_make_one_attempt_per_call(settings: Settings) -> None:
    """botocore's `max_attempts` counts retries after the first request; `total_max_attempts` is the count."""
    assert R2Storage(r2_at(settings, "http://127.0.0.1:9")).client.meta.config.retries == ONE_REQUEST
    assert SesMailer(ses_at(settings, "http://127.0.0.1:9")).client.meta.config.retries == ONE_REQUEST


@pytest.mark.parametrize("fails_once", [(204, {}, b"")], indirect=True)
async def test_a_failing_storage_call_is_sent_once_and_left_to_temporal(
    fails_once: FailsOnce, settings: Settings
) -> None:
    storage = R2Storage(r2_at(settings, fails_once.url))
    try:
        with pytest.raises(ApplicationError) as failure:
            await storage.delete("uploads/gone")
        assert not failure.value.non_retryable  # Temporal's next attempt ...
        assert fails_once.requests == 1  # ... is the only retry: boto3 sent it once
        await storage.delete("uploads/gone")  # and that next attempt succeeds
        assert fails_once.requests == 2
    finally:
        await storage.aclose()


SENT = (200, {"Content-Type": "application/json"}, json.dumps({"MessageId": "ses-0001"}).encode())


@pytest.mark.parametrize("fails_once", [SENT], indirect=True)
async def test_a_failing_email_send_is_sent_once_and_left_to_temporal(
    fails_once: FailsOnce, settings: Settings
) -> None:
    mailer = SesMailer(ses_at(settings, fails_once.url))
    message = EmailMessage(message_id=f"test-{uuid.uuid4()}", to=["ada@example.com"], subject="Hi", text="Hello")
    try:
        with pytest.raises(ApplicationError) as failure:
            await mailer.deliver(message)
        assert not failure.value.non_retryable
        assert fails_once.requests == 1
        assert await mailer.deliver(message) == "ses-0001"
        assert fails_once.requests == 2
    finally:
        await mailer.aclose()
