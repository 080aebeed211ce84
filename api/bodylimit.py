"""A size limit on every request body, enforced on the ASGI stream before the app reads past it.

Each route class has its limit: uploads their file limit plus the multipart framing, payment webhooks
MAX_WEBHOOK_BODY_BYTES, everything else (JSON) MAX_JSON_BODY_BYTES. A Content-Length over the limit is
answered 413 before a byte is read; a body without one (chunked), or longer than it said, is counted as it
arrives and answered 413 as soon as it passes the limit, and the rest is never read. So no route, however it
reads its body (`request.body()`, `request.json()`, a stream), can be made to hold more than its limit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_body
from api.uploads import MULTIPART_ALLOWANCE, megabytes
from settings import Settings

WEBHOOKS_PREFIX = "/api/payments/webhooks/"


@dataclass(frozen=True)
class Limit:
    max_bytes: int
    message: str


class BodyTooLarge(Exception):
    """Raised from `receive` once the body passes its limit; the middleware answers 413 instead."""


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.default = Limit(
            settings.max_json_body_bytes,
            f"The request body is larger than the limit of {megabytes(settings.max_json_body_bytes)}",
        )
        self.webhooks = Limit(
            settings.max_webhook_body_bytes,
            f"The webhook body is larger than the limit of {megabytes(settings.max_webhook_body_bytes)}",
        )
        self.uploads = {
            path: Limit(file_limit + MULTIPART_ALLOWANCE, _file_too_large(file_limit))
            for path, file_limit in (
                ("/api/files/upload", settings.file_max_bytes),
                ("/api/ai/voice", settings.voice_max_bytes),
            )
        }

    def limit_for(self, path: str) -> Limit:
        if path.startswith(WEBHOOKS_PREFIX):
            return self.webhooks
        return self.uploads.get(path, self.default)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit.max_bytes:
            await _refuse(send, limit)
            return

        received = 0
        exceeded = False
        answering = False

        async def counted_receive() -> Message:
            nonlocal received, exceeded
            if exceeded:
                raise BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit.max_bytes:
                    exceeded = True
                    raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal answering
            if exceeded and not answering:
                return  # the app's answer to a body it could not finish reading (a 400, a 500): ours replaces it
            answering = answering or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not exceeded or answering:
                raise
        if exceeded and not answering:
            await _refuse(send, limit)


async def _refuse(send: Send, limit: Limit) -> None:
    body = json.dumps(error_body(413, limit.message), separators=(",", ":")).encode()  # as JSONResponse writes it
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),  # the unread rest of the body makes the connection unusable
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _file_too_large(file_limit: int) -> str:
    return f"The file is larger than the limit of {megabytes(file_limit)}"
