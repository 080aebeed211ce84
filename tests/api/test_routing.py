"""Routing skips the routers a path cannot be under, and answers every path as FastAPI's own routing does."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from conftest import AppFactory
from fastapi import FastAPI
from fastapi.routing import APIRoute

import api.app
from api.routing import PrefixedBranch, skip_other_prefixes

# (method, path): routes of the first and last routers, unknown paths beside a prefix, a wrong method, a
# trailing slash, a path parameter, a prefix alone.
PROBES = [
    ("GET", "/health"),
    ("GET", "/api/payments/catalogue"),
    ("POST", "/api/payments/catalogue"),
    ("GET", "/api/payments/catalogue/"),
    ("GET", "/api/paymentsx/catalogue"),
    ("GET", "/api/payments"),
    ("GET", "/api/payments/not-a-uuid"),
    ("POST", "/api/payments/webhooks/stripe"),
    ("GET", "/auth/me"),
    ("GET", "/auth"),
    ("GET", "/api/files/00000000-0000-0000-0000-000000000000"),
    ("DELETE", "/api/capabilities"),
    ("GET", "/codec/decode"),
    ("GET", "/nowhere"),
    ("GET", "/"),
    # A hostile client's spellings of a prefix: encoded, doubled, climbing out, another case, a NUL.
    ("GET", "/api/%70ayments/catalogue"),
    ("GET", "//api/payments/catalogue"),
    ("GET", "/api/payments/../../auth/me"),
    ("GET", "/API/PAYMENTS/CATALOGUE"),
    ("GET", "/api/payments%00/catalogue"),
]


async def answers(app: FastAPI, root_path: str = "") -> list[tuple[int, str | None, str | None, Any]]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, root_path=root_path, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            results = []
            for method, path in PROBES:
                answer = await http.request(method, root_path + path)
                body = answer.json() if answer.headers.get("content-type") == "application/json" else answer.content
                if isinstance(body, dict):
                    body.pop("timestamp", None)
                results.append((answer.status_code, answer.headers.get("location"), answer.headers.get("allow"), body))
            return results


@pytest.mark.parametrize("root_path", ["", "/v1"])
async def test_every_path_gets_the_answer_fastapis_own_routing_gives(
    make_app: AppFactory, monkeypatch: pytest.MonkeyPatch, root_path: str
) -> None:
    gated = await answers(make_app(), root_path)
    monkeypatch.setattr(api.app, "skip_other_prefixes", lambda app: 0)
    plain = make_app()
    assert not [route for route in plain.router.routes if isinstance(route, PrefixedBranch)]
    assert gated == await answers(plain, root_path)
    assert gated[1][0] == 200 and gated[2][0] == 405 and gated[4][0] == 404


async def test_a_request_is_matched_only_against_the_routes_its_path_can_be_under(
    make_app: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app()
    prefixed = [route for route in app.router.routes if isinstance(route, PrefixedBranch)]
    assert len(prefixed) >= 10  # every router with a prefix; none if FastAPI stopped including by branches
    asked: list[str] = []
    matches = APIRoute.matches

    def noting(route: APIRoute, scope: Any) -> Any:
        asked.append(route.path)
        return matches(route, scope)

    monkeypatch.setattr(APIRoute, "matches", noting)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            assert (await http.get("/api/payments/catalogue")).status_code == 200
    other_prefixes = {branch.original_router.prefix for branch in prefixed} - {"/api/payments"}
    assert "/api/payments/catalogue" in asked
    assert not [path for path in asked if path.startswith(tuple(other_prefixes))], asked


def test_gating_twice_changes_nothing(make_app: AppFactory) -> None:
    app = make_app()
    routes = list(app.router.routes)
    assert skip_other_prefixes(app) == 0
    assert app.router.routes == routes
