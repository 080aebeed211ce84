"""A local Comgate payment API (protocol v1.0): form-encoded POSTs to /v1.0/create, status, cancel and refund,
each authenticated by merchant and secret in the form, each answered form-encoded with `code` and `message`.

`pay` stands for the payer paying on Comgate's page; `push` builds the form-encoded push notification
Comgate posts to the merchant's URL.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse

MERCHANT = "123456"
SECRET = "comgate-statex-secret"
_REQUIRED_FOR_CREATE = ("price", "curr", "label", "refId", "method", "email", "prepareOnly")


def _answer(**fields: Any) -> PlainTextResponse:
    return PlainTextResponse(urlencode({key: str(value) for key, value in fields.items()}))


class FakeComgate:
    def __init__(self) -> None:
        self.payments: dict[str, dict[str, str]] = {}
        self.refunds: list[dict[str, str]] = []
        self.app = self._build()

    def pay(self, trans_id: str) -> None:
        self.payments[trans_id]["status"] = "PAID"

    def push(self, trans_id: str, *, secret: str = SECRET, merchant: str = MERCHANT, **override: str) -> bytes:
        payment = self.payments[trans_id]
        fields = {
            "merchant": merchant,
            "test": payment["test"],
            "price": payment["price"],
            "curr": payment["curr"],
            "label": payment["label"],
            "refId": payment["refId"],
            "method": "CARD_CZ_CSOB_2",
            "email": payment["email"],
            "transId": trans_id,
            "secret": secret,
            "status": payment["status"],
            **override,
        }
        return urlencode(fields).encode()

    def _build(self) -> FastAPI:
        app = FastAPI()

        async def authenticated(request: Request) -> dict[str, str] | None:
            form = {key: str(value) for key, value in (await request.form()).items()}
            if form.get("merchant") != MERCHANT or form.get("secret") != SECRET:
                return None
            return form

        @app.post("/v1.0/create")
        async def create(request: Request) -> PlainTextResponse:
            form = await authenticated(request)
            if form is None:
                return _answer(code=1301, message="Unknown e-shop")
            if missing := [name for name in _REQUIRED_FOR_CREATE if not form.get(name)]:
                return _answer(code=1100, message=f"Missing parameter {missing[0]}")
            if not form["price"].isdigit() or int(form["price"]) < 100:
                return _answer(code=1309, message="Incorrect amount")
            if len(form["label"]) > 16:
                return _answer(code=1100, message="label is longer than 16 characters")
            trans_id = "-".join(secrets.token_hex(2).upper() for _ in range(3))
            self.payments[trans_id] = {**form, "status": "PENDING", "transId": trans_id}
            redirect = f"https://payments.comgate.cz/client/instructions/index?id={trans_id}"
            return _answer(code=0, message="OK", transId=trans_id, redirect=redirect)

        @app.post("/v1.0/status")
        async def status(request: Request) -> PlainTextResponse:
            form = await authenticated(request)
            if form is None:
                return _answer(code=1301, message="Unknown e-shop")
            payment = self.payments.get(form.get("transId", ""))
            if payment is None:
                return _answer(code=1400, message="Payment not found")
            fields = ("merchant", "test", "price", "curr", "label", "refId", "method", "email", "transId", "status")
            return _answer(code=0, message="OK", **{name: payment.get(name, "") for name in fields})

        @app.post("/v1.0/cancel")
        async def cancel(request: Request) -> PlainTextResponse:
            form = await authenticated(request)
            payment = self.payments.get((form or {}).get("transId", ""))
            if form is None or payment is None:
                return _answer(code=1400, message="Payment not found")
            if payment["status"] != "PENDING":
                return _answer(code=1400, message=f"Payment is {payment['status']}, it cannot be cancelled")
            payment["status"] = "CANCELLED"
            return _answer(code=0, message="OK")

        @app.post("/v1.0/refund")
        async def refund(request: Request) -> PlainTextResponse:
            form = await authenticated(request)
            payment = self.payments.get((form or {}).get("transId", ""))
            if form is None or payment is None:
                return _answer(code=1400, message="Payment not found")
            if payment["status"] != "PAID" or form.get("amount") != payment["price"]:
                return _answer(code=1400, message="Refund refused")
            self.refunds.append(form)
            return _answer(code=0, message="OK")

        return app
