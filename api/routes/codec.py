"""POST /codec/decode and /codec/encode: Temporal's remote codec protocol, for the Temporal UI and CLI.

Bodies are `temporal.api.common.v1.Payloads` in protobuf JSON form (`{"payloads": [{"metadata": {...},
"data": "<base64>"}]}`), answered in the same form. Operators only (services/codec.py); never rate-limited
per user (the UI sends one call per payload it shows); CORS for the Temporal UI's origin only (CodecCors).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from google.protobuf import json_format
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.api.common.v1 import Payload, Payloads

from api.deps import service
from api.ratelimit import NotLimitedRoute
from services.codec import CodecService
from services.errors import BadRequest, UnsupportedMediaType

PREFIX = "/codec"


async def _operator(request: Request, codec: Annotated[CodecService, Depends(service(CodecService))]) -> CodecService:
    """Before the body is read: a caller without the operators' token learns nothing, not even parse errors."""
    codec.admit(request.headers.get("authorization"), request.client.host if request.client else None)
    return codec


Operator = Annotated[CodecService, Depends(_operator)]
router = APIRouter(prefix=PREFIX, tags=["codec"], include_in_schema=False, route_class=NotLimitedRoute)


@router.post("/decode")
async def decode(request: Request, codec: Operator) -> Response:
    return _answer(await codec.decode(await _payloads(request)))


@router.post("/encode")
async def encode(request: Request, codec: Operator) -> Response:
    return _answer(await codec.encode(await _payloads(request)))


async def _payloads(request: Request) -> list[Payload]:
    """JSON only (as the Temporal UI and CLI send it): a form or text/plain body, which a page on another origin
    can send without a preflight, is refused before it is read."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json":
        raise UnsupportedMediaType("The codec server takes Content-Type: application/json only")
    try:
        return list(json_format.Parse(await request.body(), Payloads()).payloads)
    except (json_format.ParseError, UnicodeDecodeError) as err:
        raise BadRequest(f"Expected temporal.api.common.v1.Payloads as JSON: {err}") from err


def _answer(payloads: list[Payload]) -> Response:
    return Response(json_format.MessageToJson(Payloads(payloads=payloads)), media_type="application/json")


class CodecCors:
    """CORS for /codec alone: the Temporal UI's origins (TEMPORAL_UI_ORIGINS), which call it with credentials;
    the API's customer origins (CORS_ORIGINS) stay out of it, and the UI's origins out of the rest of the API.
    Outside the API's own CORS middleware, so the UI's preflight is answered here."""

    def __init__(self, app: ASGIApp, origins: list[str]) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            self._without_cors,
            allow_origins=origins,
            allow_credentials=True,
            allow_methods=["POST", "OPTIONS"],
            allow_headers=["Content-Type", "X-Namespace", "Authorization"],
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX + "/"):
            await self.app(scope, receive, send)
            return
        origin = Headers(scope=scope).get("origin")
        if origin is None or self.cors.is_allowed_origin(origin):
            await self.cors(scope, receive, send)
        else:  # not the UI's: no CORS header at all, not even a preflight's methods and headers
            await self.cors(scope, receive, _stripping_cors(send))

    async def _without_cors(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The rest of the stack, whose own CORS middleware would answer a customer origin: what it adds is
        dropped here, and only this class's CORS (the UI's origins) reaches the answer."""
        await self.app(scope, receive, _stripping_cors(send))


def _stripping_cors(send: Send) -> Send:
    async def stripped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {
                **message,
                "headers": [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if not bytes(name).lower().startswith(b"access-control-")
                ],
            }
        await send(message)

    return stripped
