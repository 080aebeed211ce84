"""Per-day request limits (the seed's: 2 AI calls, 10 uploads, 100 of anything else), declared on each route.

A route names the bucket its requests spend where it is declared, as a parameter:
`_: Annotated[Quota, RateLimit("ai")]`. A router whose routes are never limited (health, capabilities, webhooks,
the codec) says so with its route class, `NotLimitedRoute`, which costs nothing per request (FastAPI solves
each dependency on every request, ~10 µs); a single route (logout, the documentation, metrics) with
`dependencies=[NotLimited]`. Every route declares one or the other (tests/api/test_rate_limits.py walks the
app). The routes that are counted use `RateLimitedRoute`, which spends the request's quota after FastAPI's
validation and authentication and before the endpoint body: a request refused for bad input or a missing
token never uses up the caller's quota, so a typo never costs one of the day's two AI requests. An endpoint
that validates a body FastAPI cannot see (an upload stream) declares `RateLimit("upload", counts_itself=True)`
and calls its quota's `check` before reading and `spend` once the body is valid.

Counted per user id on routes that require sign-in (the session was checked live by `CurrentUser`), else
per client IP, in a moving 24-hour window. A route open without sign-in (register, login, refresh, contact, a
download link) counts by IP whatever Authorization header comes with it: a token, even a valid one, must not
buy a caller a fresh bucket of password guesses or emails. Logout is never refused: it only ends a session,
and an office that spent its IP's quota must still be able to sign out.
The store is Redis when `REDIS_URL` is set (shared by every API process), memory otherwise. If the store is
down the limiter fails open and reports it: the service stays up. A refusal is `TooManyRequests`, the one 429,
answered by the domain-error handler with Retry-After and the error envelope.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from api.deps import get_current_user
from observability import metrics
from observability.sentry import report
from services.errors import TooManyRequests
from settings import Settings

log = logging.getLogger(__name__)

Bucket = Literal["ai", "upload", "default"]
_REPORT_EVERY_SECONDS = 60.0


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    retry_after: int


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


async def enforce(request: Request, bucket: Bucket, *, count: bool = True) -> None:
    """Refuse with 429 if the caller is over the limit of `bucket`; `count=False` only looks."""
    limiter: RateLimiter = request.app.state.rate_limiter
    if not limiter.enabled or client_ip(request) in limiter.allow_list:
        return
    identity = limit_identity(request)
    decision = await limiter.check(bucket, identity, count=count)
    if not decision.allowed:
        kind = identity.partition(":")[0]  # whether a user or an IP ran out, not which IP: personal data
        log.warning("rate limit refused in bucket %s (%s)", bucket, kind, extra={"bucket": bucket, "identity": kind})
        metrics.rate_limit_refusals.labels(bucket).inc()
        seconds = decision.retry_after
        raise TooManyRequests(
            f"Rate limit exceeded. Try again in {seconds} seconds.", retry_after=seconds, error="Too Many Requests"
        )


@dataclass(slots=True)
class Quota:
    """One request's draw on its route's bucket (no bucket: a route that is never limited)."""

    request: Request
    bucket: Bucket | None

    async def check(self) -> None:
        """Refuse a caller who has already spent the bucket, without counting this request."""
        if self.bucket is not None:
            await enforce(self.request, self.bucket, count=False)

    async def spend(self) -> None:
        """Count this request, and refuse it if the bucket was already spent."""
        if self.bucket is not None:
            await enforce(self.request, self.bucket)


@dataclass(frozen=True)
class Limit:
    """A route's declaration, the dependency behind `RateLimit` and `NotLimited`: it hands the endpoint the
    request's `Quota` and counts nothing itself (FastAPI solves dependencies before it validates the body)."""

    bucket: Bucket | None
    counts_itself: bool = False

    async def __call__(self, request: Request) -> Quota:
        return Quota(request, self.bucket)


def RateLimit(bucket: Bucket, *, counts_itself: bool = False) -> Any:  # named like Depends and Query
    """The bucket a route's requests spend: `_: Annotated[Quota, RateLimit("ai")]` in the endpoint's parameters.
    With `counts_itself`, the endpoint calls the quota's `check` and `spend` itself (see the module)."""
    return Depends(Limit(bucket, counts_itself))


NOT_LIMITED = Limit(None)
NotLimited: Any = Depends(NOT_LIMITED)
"""A route that no limit ever refuses, in a router whose other routes are limited: `dependencies=[NotLimited]`."""


def signs_in(dependency: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Mark a dependency that, like `get_current_user`, lets in only a known user and sets `request.state.user_id`
    (by another credential than the bearer token): its route counts against that user, not the IP."""
    dependency.signs_in = True  # type: ignore[attr-defined]
    return dependency


class NotLimitedRoute(APIRoute):
    """A route of a router that no limit ever refuses (probes, capabilities, webhooks, the codec): the route
    class is the declaration, so it costs nothing per request."""


def declared_limit(route: APIRoute) -> tuple[Limit, str | None] | None:
    """The route's `RateLimit` or `NotLimited` (or its class, `NotLimitedRoute`), and the parameter that receives
    its quota (None when it came through `dependencies=`); None if it declares neither. More than one is an error."""
    if isinstance(route, NotLimitedRoute):
        return NOT_LIMITED, None
    found = [(sub.call, sub.name) for sub in route.dependant.dependencies if isinstance(sub.call, Limit)]
    if len(found) > 1:
        raise TypeError(f"a route declares one rate limit, not {len(found)}: {[limit for limit, _ in found]}")
    return found[0] if found else None


class RateLimitedRoute(APIRoute):
    """A route whose request spends its declared bucket once FastAPI has validated it and its authentication
    dependencies let it in, just before the endpoint body runs."""

    def __init__(self, path: str, endpoint: Callable[..., Awaitable[Any]], **kwargs: Any) -> None:
        super().__init__(path, self._spending_first(endpoint), **kwargs)
        declared = declared_limit(self)
        if declared is None:
            raise TypeError(f"{path}: declare the route's bucket, `_: Annotated[Quota, RateLimit(...)]`, or NotLimited")
        self.rate_limit, parameter = declared
        self.spends_quota = self.rate_limit.bucket is not None and not self.rate_limit.counts_itself
        if self.spends_quota and parameter is None:
            raise TypeError(f"{path}: declare RateLimit as a parameter, so the route can spend the request's quota")
        self.quota_parameter = parameter or ""
        self.requires_sign_in = _signs_in(self.dependant)

    def _spending_first(self, endpoint: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(endpoint)  # FastAPI reads the endpoint's own signature through it
        async def spending_first(*args: Any, **kwargs: Any) -> Any:
            if self.spends_quota:
                await kwargs[self.quota_parameter].spend()
            return await endpoint(*args, **kwargs)

        return spending_first


def _signs_in(dependant: Dependant) -> bool:
    signs_in = dependant.call is get_current_user or getattr(dependant.call, "signs_in", False)
    return signs_in or any(_signs_in(sub) for sub in dependant.dependencies)
