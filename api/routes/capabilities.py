"""GET /api/capabilities: no sign-in, not counted against any limit (a frontend asks it on every load)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from api.deps import service
from api.ratelimit import NotLimitedRoute
from models.api.capabilities import Capabilities
from services.capabilities import CapabilityService

router = APIRouter(prefix="/api/capabilities", tags=["capabilities"], route_class=NotLimitedRoute)


@router.get("", name="get")
async def get(capabilities: Annotated[CapabilityService, Depends(service(CapabilityService))]) -> Capabilities:
    """Which AI providers answer (or that answers are offline templates), whether voice works and through
    whom, which gateways and currencies work, the storage and email backends, the limits in force, and whether
    generated code can be verified (the bubblewrap sandbox works here) or why not, and whether the running app is
    pictured (a headless browser on the worker) or why not."""
    return await capabilities.describe()
