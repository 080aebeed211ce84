"""A local PayPal REST API: OAuth client credentials, Orders v2, capture refunds, webhook signatures.

It speaks PayPal's wire format (JSON bodies, Bearer tokens, PayPal-Request-Id idempotency, `payer-action`
links, error bodies with `name` and `details[].issue`) and keeps the state the flow needs. Two things a
real buyer and PayPal's servers would do are methods for the test to call: `approve` (the buyer approves
on PayPal's page) and `webhook` (PayPal signs and sends an event). The signature is PayPal's shape
(transmission id, time, webhook id and the CRC32 of the event, signed, checked by verify-webhook-signature);
the key is an HMAC key here, where PayPal uses its certificate.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import uuid
import zlib
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Form, Header, HTTPException, Request
from fastapi.responses import JSONResponse

CLIENT_ID = "statex-paypal-client"
CLIENT_SECRET = "statex-paypal-secret"
WEBHOOK_ID = "WH-STATEX-TEST-0001"
CERT_URL = "https://api.sandbox.paypal.com/v1/notifications/certs/CERT-statex-test"


def _canonical(event: dict[str, Any]) -> bytes:
    return json.dumps(event, sort_keys=True, separators=(",", ":")).encode()


class FakePayPal:
    def __init__(self) -> None:
        self.tokens: set[str] = set()
        self.orders: dict[str, dict[str, Any]] = {}
        self.captures: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.replies: dict[tuple[str, str], dict[str, Any]] = {}  # (path, PayPal-Request-Id) -> first answer
        self.signing_key = secrets.token_bytes(32)
        self.app = self._build()

    # --- what the buyer and PayPal's own servers do ---------------------------------------------------

    def approve(self, order_id: str) -> None:
        self.orders[order_id]["status"] = "APPROVED"

    def order_view(self, order_id: str) -> dict[str, Any]:
        order = self.orders[order_id]
        unit = dict(order["purchase_units"][0])
        if order["capture_id"]:
            unit["payments"] = {"captures": [self.captures[order["capture_id"]]]}
        links = [{"href": f"https://api-m.sandbox.paypal.com/v2/checkout/orders/{order_id}", "rel": "self"}]
        if order["status"] == "PAYER_ACTION_REQUIRED":
            links.append(
                {"href": f"https://www.sandbox.paypal.com/checkoutnow?token={order_id}", "rel": "payer-action"}
            )
        return {
            "id": order_id,
            "intent": "CAPTURE",
            "status": order["status"],
            "purchase_units": [unit],
            "links": links,
        }

    def webhook(self, event_type: str, resource: dict[str, Any], event_id: str | None = None) -> tuple[bytes, dict]:
        """The body and headers of one delivery, signed as PayPal signs."""
        event = {
            "id": event_id or f"WH-{uuid.uuid4().hex[:20].upper()}",
            "event_version": "1.0",
            "create_time": datetime.now(UTC).isoformat(),
            "resource_type": "checkout-order" if event_type.startswith("CHECKOUT") else "capture",
            "event_type": event_type,
            "summary": event_type,
            "resource": resource,
        }
        transmission_id = str(uuid.uuid4())
        transmission_time = datetime.now(UTC).isoformat()
        signature = self._sign(transmission_id, transmission_time, WEBHOOK_ID, event)
        headers = {
            "Content-Type": "application/json",
            "PAYPAL-AUTH-ALGO": "SHA256withRSA",
            "PAYPAL-CERT-URL": CERT_URL,
            "PAYPAL-TRANSMISSION-ID": transmission_id,
            "PAYPAL-TRANSMISSION-SIG": signature,
            "PAYPAL-TRANSMISSION-TIME": transmission_time,
        }
        return json.dumps(event).encode(), headers

    def _sign(self, transmission_id: str, transmission_time: str, webhook_id: str, event: dict[str, Any]) -> str:
        message = f"{transmission_id}|{transmission_time}|{webhook_id}|{zlib.crc32(_canonical(event))}"
        return base64.b64encode(hmac.new(self.signing_key, message.encode(), hashlib.sha256).digest()).decode()

    # --- the REST API -----------------------------------------------------------------------------------

    def _build(self) -> FastAPI:
        app = FastAPI()

        def authorized(authorization: str | None) -> None:
            scheme, _, token = (authorization or "").partition(" ")
            if scheme != "Bearer" or token not in self.tokens:
                raise HTTPException(
                    401, {"error": "invalid_token", "error_description": "Token signature verification failed"}
                )

        def unprocessable(issue: str) -> JSONResponse:
            body = {
                "name": "UNPROCESSABLE_ENTITY",
                "details": [{"issue": issue}],
                "message": "The requested action could not be performed.",
            }
            return JSONResponse(body, status_code=422)

        def once(path: str, request_id: str | None, make: Any) -> dict[str, Any]:
            if request_id is None:
                return make()
            key = (path, request_id)
            if key not in self.replies:
                self.replies[key] = make()
            return self.replies[key]

        @app.post("/v1/oauth2/token")
        async def token(request: Request, grant_type: str = Form()) -> dict[str, Any]:
            expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
            if request.headers.get("authorization") != expected or grant_type != "client_credentials":
                raise HTTPException(
                    401, {"error": "invalid_client", "error_description": "Client Authentication failed"}
                )
            issued = f"A21AA{secrets.token_hex(16)}"
            self.tokens.add(issued)
            return {
                "scope": "https://uri.paypal.com/services/payments",
                "access_token": issued,
                "token_type": "Bearer",
                "app_id": "APP-STATEX",
                "expires_in": 32400,
                "nonce": secrets.token_hex(8),
            }

        @app.post("/v2/checkout/orders", status_code=201)
        async def create_order(
            request: Request, authorization: str | None = Header(None), paypal_request_id: str | None = Header(None)
        ) -> Any:
            authorized(authorization)
            body = await request.json()
            unit = body["purchase_units"][0]
            context = body["payment_source"]["paypal"]["experience_context"]
            if body.get("intent") != "CAPTURE" or not context.get("return_url") or not context.get("cancel_url"):
                return unprocessable("MISSING_REQUIRED_PARAMETER")
            value = unit["amount"]["value"]
            if "." not in value or len(value.split(".")[1]) != 2:
                return unprocessable("DECIMAL_PRECISION")

            def make() -> dict[str, Any]:
                order_id = secrets.token_hex(8).upper()
                self.orders[order_id] = {
                    "status": "PAYER_ACTION_REQUIRED",
                    "purchase_units": [unit],
                    "capture_id": None,
                }
                return self.order_view(order_id)

            return once("create", paypal_request_id, make)

        @app.get("/v2/checkout/orders/{order_id}")
        async def show_order(order_id: str, authorization: str | None = Header(None)) -> Any:
            authorized(authorization)
            if order_id not in self.orders:
                raise HTTPException(404, {"name": "RESOURCE_NOT_FOUND", "details": [{"issue": "INVALID_RESOURCE_ID"}]})
            return self.order_view(order_id)

        @app.post("/v2/checkout/orders/{order_id}/capture", status_code=201)
        async def capture_order(
            order_id: str, authorization: str | None = Header(None), paypal_request_id: str | None = Header(None)
        ) -> Any:
            authorized(authorization)
            order = self.orders[order_id]
            if (f"capture/{order_id}", paypal_request_id) in self.replies:
                return self.replies[(f"capture/{order_id}", paypal_request_id)]
            if order["status"] == "COMPLETED":
                return unprocessable("ORDER_ALREADY_CAPTURED")
            if order["status"] != "APPROVED":
                return unprocessable("ORDER_NOT_APPROVED")

            def make() -> dict[str, Any]:
                unit = order["purchase_units"][0]
                capture_id = secrets.token_hex(8).upper()
                self.captures[capture_id] = {
                    "id": capture_id,
                    "status": "COMPLETED",
                    "amount": unit["amount"],
                    "custom_id": unit.get("custom_id"),
                    "supplementary_data": {"related_ids": {"order_id": order_id}},
                }
                order["status"], order["capture_id"] = "COMPLETED", capture_id
                return self.order_view(order_id)

            return once(f"capture/{order_id}", paypal_request_id, make)

        @app.post("/v2/payments/captures/{capture_id}/refund", status_code=201)
        async def refund_capture(
            capture_id: str, authorization: str | None = Header(None), paypal_request_id: str | None = Header(None)
        ) -> Any:
            authorized(authorization)
            capture = self.captures[capture_id]

            def make() -> dict[str, Any] | JSONResponse:
                if capture["status"] == "REFUNDED":
                    return unprocessable("CAPTURE_FULLY_REFUNDED")
                refund_id = secrets.token_hex(8).upper()
                capture["status"] = "REFUNDED"
                self.refunds[refund_id] = {
                    "id": refund_id,
                    "status": "COMPLETED",
                    "amount": capture["amount"],
                    "custom_id": capture["custom_id"],
                }
                return self.refunds[refund_id]

            return once(f"refund/{capture_id}", paypal_request_id, make)

        @app.post("/v1/notifications/verify-webhook-signature")
        async def verify(request: Request, authorization: str | None = Header(None)) -> dict[str, str]:
            authorized(authorization)
            body = await request.json()
            expected = self._sign(
                body["transmission_id"], body["transmission_time"], body["webhook_id"], body["webhook_event"]
            )
            genuine = body["webhook_id"] == WEBHOOK_ID and hmac.compare_digest(expected, body["transmission_sig"])
            return {"verification_status": "SUCCESS" if genuine else "FAILURE"}

        return app
