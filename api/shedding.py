"""Overload sheds load instead of drowning: at most API_MAX_CONCURRENCY requests in flight per process.

Past the bound a request is answered at once with 503 and `Retry-After: 1`, before routing, authentication or
a database connection: a saturated process stays responsive, and what it takes on it can finish within the
client's patience instead of queueing behind thousands of others. Pure ASGI, so streamed bodies pass through.
The probes and /metrics are never shed: an orchestrator must see a busy process as alive, not kill it.
An event stream counts while it is being opened (authentication, the owner's check) and no longer once its
answer has started: an open stream is no request in flight, and has bounds of its own (services.prototypes.watchers),
so that streams held open, however many, never make everyone else's requests a 503.
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response

NEVER_SHED = frozenset({"/health", "/ready", "/metrics"})
LONG_LIVED = re.compile(r"^/api/prototypes/[^/]+/events$")
"""Streams: counted until their answer starts, not for as long as they stay open."""


class LoadShedding:
    def __init__(self, app: ASGIApp, *, max_in_flight: int) -> None:
        self.app = app
        self.max_in_flight = max_in_flight
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in NEVER_SHED:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            busy = error_response(503, "The service is busy; please retry in a moment", headers={"Retry-After": "1"})
            await busy(scope, receive, send)
            return
        self.in_flight += 1  # one event loop per process: no lock needed between the check and the count
        counted = True

        def uncount() -> None:
            nonlocal counted
            if counted:
                counted = False
                self.in_flight -= 1

        async def send_then_uncount(message: Message) -> None:
            if message["type"] == "http.response.start":
                uncount()
            await send(message)

        streams = LONG_LIVED.match(scope["path"]) is not None
        try:
            await self.app(scope, receive, send_then_uncount if streams else send)
        finally:
            uncount()
