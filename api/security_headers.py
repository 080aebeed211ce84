"""Headers that make every answer safe to handle in a browser or a shared cache.

Pure ASGI, so that streamed downloads and redirects pass through untouched and get the headers too. A header
the route set itself is kept (a route that may be cached says so with its own Cache-Control).
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ALWAYS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # download links carry their token in the URL
    "X-Frame-Options": "DENY",
}
HSTS = "max-age=63072000; includeSubDomains"
CREDENTIAL_PARAMS = frozenset({"token", "access_token", "refresh_token"})


def carries_credentials(scope: Scope) -> bool:
    """Sent with a bearer token or a download link's token: the answer is someone's own and must not be stored."""
    if any(name == b"authorization" for name, _ in scope.get("headers", [])):
        return True
    query = scope.get("query_string", b"").decode("latin-1")
    return any(name in CREDENTIAL_PARAMS for name, _ in parse_qsl(query, keep_blank_values=True))


class SecurityHeaders:
    def __init__(self, app: ASGIApp, *, hsts: bool) -> None:
        self.app = app
        self.headers = {**ALWAYS, **({"Strict-Transport-Security": HSTS} if hsts else {})}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        private = carries_credentials(scope)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(raw=list(message.get("headers", [])))
                for name, value in self.headers.items():
                    headers.setdefault(name, value)
                if private:
                    headers.setdefault("Cache-Control", "no-store")
                message["headers"] = headers.raw
            await send(message)

        await self.app(scope, receive, send_with_headers)
