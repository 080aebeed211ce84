"""Routing: every probed path gets its answer (the order routers are included in is a cost, never an answer), and
the most requested cheap routes are tried first."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from conftest import AppFactory
from fastapi import FastAPI
from fastapi.routing import APIRoute

# (method, path, status, Allow, Location): routes of the first and last routers, unknown paths beside a prefix, a
# wrong method, a trailing slash, a path parameter, a prefix alone.
PROBES: list[tuple[str, str, int, str | None, str | None]] = [
    ("GET", "/health", 200, None, None),
    ("GET", "/api/payments/catalogue", 200, None, None),
    ("POST", "/api/payments/catalogue", 405, "GET", None),
    ("GET", "/api/payments/catalogue/", 307, None, "/api/payments/catalogue"),
    ("GET", "/api/paymentsx/catalogue", 404, None, None),
    ("GET", "/api/payments", 401, None, None),
    ("GET", "/api/payments/not-a-uuid", 401, None, None),  # authentication comes before the path's validation
    ("POST", "/api/payments/webhooks/stripe", 422, None, None),  # the webhooks' router, not the payment ids'
    ("GET", "/auth/me", 401, None, None),
    ("GET", "/auth", 404, None, None),
    ("GET", "/api/files/00000000-0000-0000-0000-000000000000", 401, None, None),
    ("GET", "/api/prototypes/00000000-0000-0000-0000-000000000000/revisions/1", 401, None, None),
    ("POST", "/api/ai/prototype", 401, None, None),
    ("DELETE", "/api/capabilities", 405, "GET", None),
    ("GET", "/codec/decode", 405, "POST", None),
    ("GET", "/nowhere", 404, None, None),
    ("GET", "/", 404, None, None),
    # A hostile client's spellings of a prefix: encoded, doubled, climbing out, another case, a NUL.
    ("GET", "/api/%70ayments/catalogue", 200, None, None),
    ("GET", "//api/payments/catalogue", 404, None, None),
    ("GET", "/api/payments/../../auth/me", 401, None, None),
    ("GET", "/API/PAYMENTS/CATALOGUE", 404, None, None),
    ("GET", "/api/payments%00/catalogue", 404, None, None),
]


async def answers(app: FastAPI, root_path: str = "") -> list[tuple[str, str, int, str | None, str | None]]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, root_path=root_path, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            results = []
            for method, path, *_ in PROBES:
                answer = await http.request(method, root_path + path)
                location = answer.headers.get("location")
                if location is not None:
                    location = location.removeprefix("http://testserver" + root_path)
                results.append((method, path, answer.status_code, answer.headers.get("allow"), location))
            return results


@pytest.mark.parametrize("root_path", ["", "/v1"])
async def test_every_probed_path_gets_its_answer(make_app: AppFactory, root_path: str) -> None:
    assert await answers(make_app(), root_path) == PROBES


@pytest.mark.parametrize(
    ("path", "status", "most"),
    [("/health", 200, 1), ("/api/capabilities", 200, 3), ("/api/payments/catalogue", 200, 4), ("/auth/me", 401, 9)],
)
async def test_the_most_requested_cheap_routes_are_tried_first(
    make_app: AppFactory, monkeypatch: pytest.MonkeyPatch, path: str, status: int, most: int
) -> None:
    """FastAPI tries a path against each route in turn: a probe, the capabilities a frontend asks on every load,
    the catalogue and the signed-in caller do little work besides, so the routes tried before theirs would be
    much of their cost."""
    app = make_app(api_docs_enabled=True, metrics_enabled=True)
    asked: list[str] = []
    matches = APIRoute.matches

    def noting(route: APIRoute, scope: Any) -> Any:
        asked.append(route.path)
        return matches(route, scope)

    monkeypatch.setattr(APIRoute, "matches", noting)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            assert (await http.get(path)).status_code == status
    assert asked[-1] == path
    assert len(set(asked)) <= most, asked  # a set: FastAPI matches the chosen router's routes again to handle it
