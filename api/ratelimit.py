"""Per-day request limits (the seed's: 2 AI calls, 10 uploads, 100 of anything else).

Counted per user id on routes that require sign-in (the session was checked live by `CurrentUser`), else
per client IP, in a moving 24-hour window. A route open without sign-in (register, login, refresh, contact, a
download link) counts by IP whatever Authorization header comes with it: a token, even a valid one, must not
buy a caller a fresh bucket of password guesses or emails. Logout is never refused (`never_limited`): it only
ends a session, and an office that spent its IP's quota must still be able to sign out.
The store is Redis when `REDIS_URL` is set (shared by every API process), memory otherwise. A request is
counted only once it has passed validation and authentication, so a typo never costs one of the day's two
AI requests. If the store is down the limiter fails open and reports it: the service stays up.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import HTTPException, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from api.deps import get_current_user
from observability.sentry import report
from settings import Settings

log = logging.getLogger(__name__)

Bucket = Literal["ai", "upload", "default"]
_REPORT_EVERY_SECONDS = 60.0


_REVISIONS = re.compile(r"^/api/prototypes/[^/]+/revisions$")
"""A revision asks models like a submission does, so it spends the AI quota though it is not under /api/ai/."""


def bucket_for(path: str) -> Bucket:
    if path.startswith("/api/ai/") or _REVISIONS.match(path):
        return "ai"
    if path == "/api/files/upload":
        return "upload"
    return "default"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    retry_after: int


class RateLimitExceeded(HTTPException):
    def __init__(self, decision: Decision) -> None:
        super().__init__(429, "Too Many Requests", headers={"Retry-After": str(decision.retry_after)})
        self.decision = decision


class RateLimiter:
    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.rate_limit_enabled
        self.allow_list = settings.effective_allow_list
        self.limits: dict[Bucket, RateLimitItem] = {
            "ai": parse(settings.rate_limit_ai),
            "upload": parse(settings.rate_limit_upload),
            "default": parse(settings.rate_limit_default),
        }
        self.namespace = settings.rate_limit_namespace
        self.storage = self._storage(settings)
        self.strategy = MovingWindowRateLimiter(self.storage)
        self._last_report = -math.inf

    @staticmethod
    def _storage(settings: Settings) -> Storage:
        if not settings.redis_url:
            return MemoryStorage()
        uri = settings.redis_url if settings.redis_url.startswith("async+") else f"async+{settings.redis_url}"
        # Short timeouts: a hung Redis must not hang every request before we fail open.
        return RedisStorage(
            uri,
            implementation="redispy",
            key_prefix=f"{settings.rate_limit_namespace}:limits",
            socket_connect_timeout=0.5,
            socket_timeout=0.5,
        )

    async def check(self, bucket: Bucket, identity: str, *, count: bool = True) -> Decision:
        """Count the request (or, with count=False, only ask whether one more would be allowed)."""
        item = self.limits[bucket]
        try:
            attempt = self.strategy.hit if count else self.strategy.test
            allowed = await attempt(item, self.namespace, bucket, identity)
            reset_at, remaining = await self.strategy.get_window_stats(item, self.namespace, bucket, identity)
        except Exception as err:  # any storage failure: fail open, but loudly
            self._report(err)
            return Decision(allowed=True, limit=item.amount, remaining=item.amount, retry_after=0)
        retry_after = 0 if allowed else max(1, math.ceil(reset_at - time.time()))
        return Decision(allowed=allowed, limit=item.amount, remaining=remaining, retry_after=retry_after)

    def _report(self, err: Exception) -> None:
        now = time.monotonic()
        if now - self._last_report < _REPORT_EVERY_SECONDS:
            return
        self._last_report = now
        log.error("rate-limit store unavailable, failing open: %s", err)
        report(err)

    async def close(self) -> None:
        if isinstance(self.storage, RedisStorage):
            await self.storage.bridge.get_connection().aclose()  # type: ignore[attr-defined]


def client_identity(request: Request) -> str:
    """The signed-in caller (a session the authentication dependency verified for this request), else the IP.
    Never a bare token decode: a revoked session's token still decodes."""
    user_id = getattr(request.state, "user_id", None)
    return f"user:{user_id}" if user_id is not None else f"ip:{client_ip(request)}"


def limit_identity(request: Request) -> str:
    """Whose quota a request spends: the user's only on a route that requires sign-in, else the IP's."""
    route = request.scope.get("route")
    if isinstance(route, RateLimitedRoute) and route.requires_sign_in:
        return client_identity(request)
    return f"ip:{client_ip(request)}"


def client_ip(request: Request) -> str:
    """As the ASGI server saw it; behind a proxy, run uvicorn with --forwarded-allow-ips."""
    return request.client.host if request.client else "unknown"


_current_request: contextvars.ContextVar[Request] = contextvars.ContextVar("statex_request")


async def enforce(request: Request, *, count: bool = True) -> None:
    """Raise 429 if the caller is over the limit of this route's bucket; `count=False` only looks."""
    limiter: RateLimiter = request.app.state.rate_limiter
    if not limiter.enabled or client_ip(request) in limiter.allow_list:
        return
    identity = limit_identity(request)
    bucket = bucket_for(request.url.path)
    decision = await limiter.check(bucket, identity, count=count)
    if not decision.allowed:
        kind = identity.partition(":")[0]  # whether a user or an IP ran out, not which IP: personal data
        log.warning("rate limit refused in bucket %s (%s)", bucket, kind, extra={"bucket": bucket, "identity": kind})
        raise RateLimitExceeded(decision)


def counts_itself(endpoint: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Mark an endpoint that validates a body FastAPI cannot see (an upload stream) and then calls `enforce`
    itself, so that only valid requests are counted there too."""
    endpoint.counts_itself = True  # type: ignore[attr-defined]
    return endpoint


def signs_in(dependency: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Mark a dependency that, like `get_current_user`, lets in only a known user and sets `request.state.user_id`
    (by another credential than the bearer token): its route counts against that user, not the IP."""
    dependency.signs_in = True  # type: ignore[attr-defined]
    return dependency


def never_limited(endpoint: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Mark an endpoint the limiter never refuses (logout: it only takes access away)."""
    endpoint.never_limited = True  # type: ignore[attr-defined]
    return endpoint


class RateLimitedRoute(APIRoute):
    """A route whose endpoint first counts the request against its bucket.

    The count sits between FastAPI's validation (and authentication dependencies) and the endpoint body:
    a request that is refused for bad input or a missing token never uses up the caller's quota.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        uncounted = getattr(endpoint, "counts_itself", False) or getattr(endpoint, "never_limited", False)
        super().__init__(path, endpoint if uncounted else _counted(endpoint), **kwargs)
        self.requires_sign_in = _signs_in(self.dependant)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def remember_request(request: Request) -> Response:
            token = _current_request.set(request)
            try:
                return await handler(request)
            finally:
                _current_request.reset(token)

        return remember_request


def _signs_in(dependant: Dependant) -> bool:
    signs_in = dependant.call is get_current_user or getattr(dependant.call, "signs_in", False)
    return signs_in or any(_signs_in(sub) for sub in dependant.dependencies)


def _counted(endpoint: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(endpoint)
    async def counted(*args: Any, **kwargs: Any) -> Any:
        await enforce(_current_request.get())
        return await endpoint(*args, **kwargs)

    return counted
