"""Routing that skips a whole router whose prefix the path does not start with.

FastAPI (0.16x) keeps each included router as a branch and, for every request, asks every branch before the
right one to try each of its routes (setting and restoring scope keys around every regex): a request to the
tenth router's first route ran 25 route matches, a quarter of a cached route's CPU (bench/). A branch whose
prefix the path does not start with cannot match, so it now answers "no" at once; every other path is matched
exactly as FastAPI matches it. The branch class is FastAPI's own (private): should a release drop it, routes are
matched as FastAPI matches them and tests/api/test_routing.py says so.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette._utils import get_route_path  # the path routes match, as FastAPI's own routing computes it
from starlette.routing import Match
from starlette.types import Scope

try:
    from fastapi.routing import _IncludedRouter
except ImportError:  # a FastAPI that no longer includes routers as branches
    _IncludedRouter = None  # type: ignore[assignment,misc]


if _IncludedRouter is not None:

    class PrefixedBranch(_IncludedRouter):  # type: ignore[misc,valid-type]
        """An included router that is asked only about paths under its prefix."""

        def matches(self, scope: Scope) -> tuple[Match, Scope]:
            if not get_route_path(scope).startswith(self.include_context.prefix + self.original_router.prefix):
                return Match.NONE, {}
            return super().matches(scope)  # type: ignore[no-any-return]


def skip_other_prefixes(app: FastAPI) -> int:
    """Once every router is included: each branch with a prefix becomes a PrefixedBranch. Returns how many."""
    if _IncludedRouter is None:
        return 0
    routes = app.router.routes
    gated = 0
    for index, route in enumerate(routes):
        if type(route) is _IncludedRouter and route.include_context.prefix + route.original_router.prefix:
            routes[index] = PrefixedBranch(original_router=route.original_router, include_context=route.include_context)
            gated += 1
    app.router._mark_routes_changed()
    return gated
