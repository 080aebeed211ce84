"""Rate limits: per user (else per IP), shared across API processes through Redis, fail-open."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Annotated

import pytest
from conftest import AppFactory
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from helpers import bearer, register_and_login, serve
from prometheus_client import REGISTRY
from pydantic import BaseModel, Field

from api.deps import CurrentUser
from api.ratelimit import Bucket, Quota, RateLimit, RateLimitedRoute, declared_limit

DAY = 24 * 60 * 60


class Probe(BaseModel):
    text: str = Field(min_length=1)


def with_probe_routes(app: FastAPI) -> FastAPI:
    """Stand-ins for routes later issues add (/api/ai/*), and an anonymous one, behind the real limiter."""
    router = APIRouter(route_class=RateLimitedRoute)

    @router.post("/api/ai/probe")
    async def ai_probe(body: Probe, user: CurrentUser, _: Annotated[Quota, RateLimit("ai")]) -> dict[str, str]:
        return {"user": str(user.id)}

    @router.get("/api/probe")
    async def anonymous_probe(_: Annotated[Quota, RateLimit("default")]) -> dict[str, bool]:
        return {"ok": True}

    app.include_router(router)
    return app


def api_routes(app: FastAPI) -> list[tuple[str, str, APIRoute]]:
    """(method, path, route) for every API route the app answers, those of included routers too."""
    found = []
    for context in iter_route_contexts(app.routes):
        if isinstance(context.original_route, APIRoute):
            found += [(method, str(context.path), context.original_route) for method in context.methods or ()]
    return found


def buckets(app: FastAPI) -> dict[tuple[str, str], Bucket | None]:
    """Each route's declared bucket (None: never limited)."""
    return {
        (method, path): declared[0].bucket
        for method, path, route in api_routes(app)
        if (declared := declared_limit(route)) is not None
    }


def test_every_route_declares_its_bucket_or_that_it_is_not_limited(make_app: AppFactory) -> None:
    app = make_app(metrics_enabled=True, api_docs_enabled=True)
    routes = api_routes(app)
    assert len(routes) >= 40  # the walk sees the included routers' routes, not only the app's own
    undeclared = [f"{method} {path}" for method, path, route in routes if declared_limit(route) is None]
    assert undeclared == []
    # A bucket only a RateLimitedRoute spends: on another route class the declaration would count nothing.
    not_counted = [
        f"{method} {path}"
        for method, path, route in routes
        if buckets(app)[method, path] is not None and not isinstance(route, RateLimitedRoute)
    ]
    assert not_counted == []


def test_the_walk_finds_a_route_that_declares_nothing(make_app: AppFactory) -> None:
    app = make_app()

    @app.get("/undeclared")
    async def undeclared() -> None: ...

    assert ("GET", "/undeclared") not in buckets(app)
    assert ("GET", "/undeclared") in {(method, path) for method, path, _ in api_routes(app)}


def test_a_counted_route_must_declare_its_bucket() -> None:
    router = APIRouter(route_class=RateLimitedRoute)
    with pytest.raises(TypeError, match="declare the route's bucket"):

        @router.get("/nothing-declared")
        async def nothing_declared() -> None: ...


def test_buckets_follow_the_seed(make_app: AppFactory) -> None:
    declared = buckets(make_app())
    assert declared["POST", "/api/ai/chat"] == "ai"
    assert declared["POST", "/api/ai/prototype"] == "ai"
    assert declared["POST", "/api/ai/voice"] == "ai"
    assert declared["POST", "/api/files/upload"] == "upload"
    assert declared["GET", "/api/files/{file_id}"] == "default"
    assert declared["POST", "/api/contact"] == "default"
    assert declared["GET", "/api/chats/{chat_id}"] == "default"  # polling does not spend the AI quota
    assert declared["POST", "/auth/logout"] is None
    assert declared["GET", "/health"] is None
    assert declared["POST", "/api/payments/webhooks/{gateway}"] is None


def test_a_revision_spends_the_ai_quota_and_its_status_does_not(make_app: AppFactory) -> None:
    declared = buckets(make_app())
    assert declared["POST", "/api/prototypes/{prototype_id}/revisions"] == "ai"
    assert declared["GET", "/api/prototypes/{prototype_id}/revisions/{number}"] == "default"
    assert declared["GET", "/api/prototypes/{prototype_id}"] == "default"


async def test_two_hundred_concurrent_requests_over_two_processes_accept_exactly_two(
    make_app: AppFactory, redis_url: str
) -> None:
    # Load shedding (API_MAX_CONCURRENCY) is another defence: off here, this test counts the limiter alone.
    first, second = (with_probe_routes(make_app(redis_url=redis_url, api_max_concurrency=1000)) for _ in range(2))
    async with serve(first) as api_a, serve(second) as api_b:
        account = await register_and_login(api_a)
        headers = bearer(account["access_token"])
        responses = await asyncio.gather(
            *(
                (api_a if i % 2 else api_b).post("/api/ai/probe", json={"text": "hi"}, headers=headers)
                for i in range(200)
            )
        )
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 2
    assert statuses.count(429) == 198
    refused = next(r for r in responses if r.status_code == 429)
    retry_after = int(refused.headers["Retry-After"])
    assert DAY - 120 <= retry_after <= DAY
    body = refused.json()
    assert body["code"] == 429
    assert body["error"] == "Too Many Requests"
    assert body["message"] == f"Rate limit exceeded. Try again in {body['retryAfter']} seconds."
    assert abs(body["retryAfter"] - retry_after) <= 1
    assert body["success"] is False and "timestamp" in body


async def test_users_have_separate_quotas(make_app: AppFactory, redis_url: str) -> None:
    async with serve(with_probe_routes(make_app(redis_url=redis_url))) as api:
        alice, bob = await register_and_login(api), await register_and_login(api)
        for account in (alice, bob):
            for expected in (200, 200, 429):
                response = await api.post("/api/ai/probe", json={"text": "x"}, headers=bearer(account["access_token"]))
                assert response.status_code == expected


async def test_bad_input_and_missing_auth_cost_nothing(make_app: AppFactory) -> None:
    async with serve(with_probe_routes(make_app())) as api:
        account = await register_and_login(api)
        headers = bearer(account["access_token"])
        for _ in range(5):
            assert (await api.post("/api/ai/probe", json={"text": ""}, headers=headers)).status_code == 422
            assert (await api.post("/api/ai/probe", json={"text": "x"})).status_code == 401
        accepted = [
            (await api.post("/api/ai/probe", json={"text": "x"}, headers=headers)).status_code for _ in range(3)
        ]
    assert accepted == [200, 200, 429]


async def test_anonymous_callers_are_keyed_by_ip(make_app: AppFactory, redis_url: str) -> None:
    app = with_probe_routes(make_app(redis_url=redis_url, rate_limit_default="3/day"))
    async with serve(app, client_ip="203.0.113.7") as first_ip, serve(app, client_ip="203.0.113.8") as second_ip:
        first = [(await first_ip.get("/api/probe")).status_code for _ in range(4)]
        second = [(await second_ip.get("/api/probe")).status_code for _ in range(4)]
    assert first == [200, 200, 200, 429]
    assert second == [200, 200, 200, 429]


async def test_a_refusal_is_counted_in_the_metrics_by_bucket(make_app: AppFactory) -> None:
    def refused() -> float:
        return REGISTRY.get_sample_value("statex_rate_limit_refusals_total", {"bucket": "default"}) or 0.0

    before = refused()
    app = with_probe_routes(make_app(rate_limit_default="1/day"))
    async with serve(app, client_ip="203.0.113.30") as api:
        statuses = [(await api.get("/api/probe")).status_code for _ in range(3)]
    assert statuses == [200, 429, 429]
    assert refused() == before + 2


async def test_allow_listed_addresses_are_not_limited(make_app: AppFactory) -> None:
    app = with_probe_routes(make_app(rate_limit_default="1/day", rate_limit_allow_list=["198.51.100.1"]))
    async with serve(app, client_ip="198.51.100.1") as api:
        statuses = {(await api.get("/api/probe")).status_code for _ in range(5)}
    assert statuses == {200}


async def test_health_and_readiness_are_never_limited(make_app: AppFactory) -> None:
    async with serve(make_app(rate_limit_default="1/day")) as api:
        statuses = {(await api.get("/health")).status_code for _ in range(5)}
    assert statuses == {200}


async def test_fails_open_and_reports_when_redis_is_down(
    make_app: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    app = with_probe_routes(make_app(redis_url="redis://127.0.0.1:1/0", rate_limit_default="1/day"))
    with caplog.at_level(logging.ERROR, logger="api.ratelimit"):
        async with serve(app) as api:
            statuses = [(await api.get("/api/probe")).status_code for _ in range(5)]
    assert statuses == [200] * 5
    assert [r.message for r in caplog.records if "failing open" in r.message]


async def test_limits_survive_a_restart_of_the_api(make_app: AppFactory, redis_url: str) -> None:
    """The count lives in Redis, not in a process: a new process sees the old count."""
    namespace = f"restart-{uuid.uuid4().hex}"
    statuses = []
    for _ in range(2):
        app = with_probe_routes(
            make_app(redis_url=redis_url, rate_limit_namespace=namespace, rate_limit_default="1/day")
        )
        async with serve(app, client_ip="192.0.2.44") as api:
            statuses.append((await api.get("/api/probe")).status_code)
    assert statuses == [200, 429]


CONTACT = {"name": "Mallory", "email": "mallory@example.com", "message": "one more, please"}


async def test_a_token_buys_no_more_attempts_where_sign_in_is_not_required(make_app: AppFactory) -> None:
    """Once an IP has spent its quota, neither its own account's valid token nor a revoked one gets it more
    password guesses or contact emails: those routes count by IP whatever Authorization says."""
    async with serve(make_app(rate_limit_default="6/day"), client_ip="203.0.113.20") as api:
        valid = await register_and_login(api)  # 2 of 6
        revoked = await register_and_login(api)  # 4 of 6
        assert (await api.post("/auth/logout", json={"refresh_token": revoked["refresh_token"]})).status_code == 204
        wrong = {"email": valid["email"], "password": "wrong password"}
        guesses = [(await api.post("/auth/login", json=wrong)).status_code for _ in range(3)]
        assert guesses == [401, 401, 429]

        right = {"email": valid["email"], "password": valid["password"]}
        for token in (valid["access_token"], revoked["access_token"]):
            assert (await api.post("/auth/login", json=right, headers=bearer(token))).status_code == 429
            assert (await api.post("/auth/login", json=wrong, headers=bearer(token))).status_code == 429
        assert (
            await api.post("/auth/register", json={**right, "name": "x"}, headers=bearer(valid["access_token"]))
        ).status_code == 429
        assert (await api.post("/api/contact", json=CONTACT, headers=bearer(valid["access_token"]))).status_code == 429
        # A revoked session is refused outright (before anything is counted), never served from a user bucket.
        assert (
            await api.post("/api/contact", json=CONTACT, headers=bearer(revoked["access_token"]))
        ).status_code == 401

        # A route that requires sign-in still counts per user: the live session has its own quota.
        assert (await api.get("/auth/me", headers=bearer(valid["access_token"]))).status_code == 200


async def test_a_revoked_token_never_selects_a_user_bucket(make_app: AppFactory) -> None:
    """The old limiter decoded any signed, unexpired token: a revoked session's token opened a fresh bucket."""
    app = with_probe_routes(make_app(rate_limit_default="3/day"))
    async with serve(app, client_ip="203.0.113.21") as api:
        account = await register_and_login(api)  # 2 of 3
        await api.post("/auth/logout", json={"refresh_token": account["refresh_token"]})
        statuses = [
            (await api.get("/api/probe", headers=bearer(account["access_token"]))).status_code for _ in range(2)
        ]
    assert statuses == [200, 429]


async def test_logout_works_after_the_ip_has_spent_its_limit(make_app: AppFactory) -> None:
    async with serve(make_app(rate_limit_default="3/day"), client_ip="203.0.113.22") as api:
        account = await register_and_login(api)  # 2 of 3
        wrong = {"email": account["email"], "password": "wrong password"}
        assert [(await api.post("/auth/login", json=wrong)).status_code for _ in range(2)] == [401, 429]
        out = await api.post("/auth/logout", json={"refresh_token": account["refresh_token"]})
        assert out.status_code == 204
        again = await api.post("/auth/logout", json={"refresh_token": account["refresh_token"]})
        assert again.status_code != 429
        me = await api.get("/auth/me", headers=bearer(account["access_token"]))
        assert me.status_code == 401  # the session really ended
