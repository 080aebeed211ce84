"""A local BTCPay Server Greenfield API: store invoices, marking their status, refunds as pull payments, and
webhook deliveries signed as BTCPay signs them (`BTCPay-Sig: sha256=<HMAC-SHA256 of the body>`).

`settle` stands for the buyer's transaction confirming on chain; `webhook` builds one delivery.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from decimal import Decimal, InvalidOperation
from typing import Any

from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse

API_KEY = "btcpay-statex-test-key"
STORE_ID = "StatexStore1"
WEBHOOK_SECRET = "btcpay-webhook-secret"


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status)


class FakeBTCPay:
    def __init__(self) -> None:
        self.invoices: dict[str, dict[str, Any]] = {}
        self.pull_payments: list[dict[str, Any]] = []
        self.base_url = "http://btcpay.invalid"  # set once served, for checkout links
        self.app = self._build()

    def settle(self, invoice_id: str) -> None:
        self.invoices[invoice_id]["status"] = "Settled"

    def webhook(
        self,
        kind: str,
        invoice_id: str,
        *,
        secret: str = WEBHOOK_SECRET,
        redelivery_of: str | None = None,
        **extra: Any,
    ) -> tuple[bytes, dict[str, str]]:
        delivery = secrets.token_urlsafe(12)
        event = {
            "deliveryId": delivery,
            "webhookId": "StatexHook1",
            "originalDeliveryId": redelivery_of or delivery,
            "isRedelivery": redelivery_of is not None,
            "type": kind,
            "timestamp": int(time.time()),
            "storeId": STORE_ID,
            "invoiceId": invoice_id,
            "metadata": self.invoices[invoice_id]["metadata"] if invoice_id in self.invoices else {},
            **extra,
        }
        body = json.dumps(event).encode()
        signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        return body, {"Content-Type": "application/json", "BTCPay-Sig": signature}

    def _build(self) -> FastAPI:
        app = FastAPI()
        store = f"/api/v1/stores/{STORE_ID}"

        def refused(authorization: str | None) -> JSONResponse | None:
            if authorization != f"token {API_KEY}":
                return _error(401, "unauthenticated", "Authentication is required for accessing this endpoint")
            return None

        @app.post(f"{store}/invoices")
        async def create_invoice(request: Request, authorization: str | None = Header(None)) -> Any:
            if (denied := refused(authorization)) is not None:
                return denied
            body = await request.json()
            try:
                amount = Decimal(body["amount"])
            except (KeyError, InvalidOperation):
                return JSONResponse([{"path": "amount", "message": "Amount should be a decimal"}], status_code=422)
            invoice_id = secrets.token_urlsafe(16)
            now = int(time.time())
            minutes = body.get("checkout", {}).get("expirationMinutes", 15)
            self.invoices[invoice_id] = {
                "id": invoice_id,
                "storeId": STORE_ID,
                "amount": str(amount),
                "currency": body["currency"],
                "type": "Standard",
                "checkoutLink": f"{self.base_url}/i/{invoice_id}",
                "status": "New",
                "additionalStatus": "None",
                "createdTime": now,
                "expirationTime": now + minutes * 60,
                "metadata": body.get("metadata", {}),
                "checkout": body.get("checkout", {}),
            }
            return self.invoices[invoice_id]

        @app.get(f"{store}/invoices")
        async def list_invoices(orderId: str | None = None, authorization: str | None = Header(None)) -> Any:
            if (denied := refused(authorization)) is not None:
                return denied
            return [inv for inv in self.invoices.values() if orderId in (None, inv["metadata"].get("orderId"))]

        @app.get(f"{store}/invoices/{{invoice_id}}")
        async def get_invoice(invoice_id: str, authorization: str | None = Header(None)) -> Any:
            if (denied := refused(authorization)) is not None:
                return denied
            if invoice_id not in self.invoices:
                return _error(404, "invoice-not-found", "The invoice was not found")
            return self.invoices[invoice_id]

        @app.post(f"{store}/invoices/{{invoice_id}}/status")
        async def mark_status(invoice_id: str, request: Request, authorization: str | None = Header(None)) -> Any:
            if (denied := refused(authorization)) is not None:
                return denied
            invoice = self.invoices[invoice_id]
            wanted = (await request.json())["status"]
            if invoice["status"] not in ("New", "Expired", "Invalid"):
                return _error(400, "invoice-state-invalid", f"Cannot mark a {invoice['status']} invoice {wanted}")
            invoice["status"], invoice["additionalStatus"] = wanted, "Marked"
            return invoice

        @app.post(f"{store}/invoices/{{invoice_id}}/refund")
        async def refund_invoice(invoice_id: str, request: Request, authorization: str | None = Header(None)) -> Any:
            if (denied := refused(authorization)) is not None:
                return denied
            invoice = self.invoices[invoice_id]
            if invoice["status"] != "Settled":
                return _error(400, "non-refundable", "Cannot refund this invoice")
            body = await request.json()
            pull_id = secrets.token_urlsafe(12)
            pull = {
                "id": pull_id,
                "name": body.get("name"),
                "description": body.get("description"),
                "currency": invoice["currency"],
                "amount": invoice["amount"],
                "viewLink": f"{self.base_url}/pull-payments/{pull_id}",
                "archived": False,
            }
            self.pull_payments.append(pull)
            return pull

        @app.get(f"{store}/pull-payments")
        async def list_pull_payments(authorization: str | None = Header(None)) -> Any:
            if (denied := refused(authorization)) is not None:
                return denied
            return self.pull_payments

        return app
