"""POST /api/ai/chat: one question to a model; GET /api/chats/{id}: the answer of one that was not ready in time.

The question spends the AI bucket (2 a day); the status route spends the default one, so polling does not use
up the day's AI requests.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, status
from fastapi.responses import JSONResponse

from api.deps import Chats, CurrentUser, IdempotencyKey
from api.disconnect import ClientGone
from api.errors import errors
from api.ratelimit import Quota, RateLimit, RateLimitedRoute
from models.api.chat import ChatAccepted, ChatRequest, ChatResponse, ChatStatus
from models.enums import AIProvider

router = APIRouter(prefix="/api/ai", tags=["ai"], route_class=RateLimitedRoute)
status_router = APIRouter(prefix="/api/chats", tags=["chats"], route_class=RateLimitedRoute)


def chosen_providers(body: ChatRequest, user: CurrentUser, chats: Chats) -> list[AIProvider]:
    """A dependency, so that a refusal comes before the limiter counts the request, as bad input does."""
    return chats.providers(user, body.model)


@router.post(
    "/chat",
    response_model=ChatResponse,
    responses={
        202: {"model": ChatAccepted, "description": "Not answered within AI_CHAT_WAIT_SECONDS: poll status_url"},
        **errors(401, 403, 422, 429, 502, 503),
    },
)
async def chat(
    body: ChatRequest,
    user: CurrentUser,
    providers: Annotated[list[AIProvider], Depends(chosen_providers)],
    chats: Chats,
    gone: ClientGone,
    _: Annotated[Quota, RateLimit("ai")],
    idempotency_key: IdempotencyKey = None,
) -> ChatResponse | JSONResponse:
    """Ask a model. Your service tier picks the provider unless `model` names one (EU_COMPLIANCE accounts:
    EU-resident providers only; another is a 403). The answer comes back if it is ready within the configured
    wait; else 202 with a status URL. A refusal under the provider's content policy is a 422, a provider's
    rejection a 502, no provider a 503. With an `Idempotency-Key`, a retry gets the first request's answer."""
    answer = await chats.ask(user, body, providers, idempotency_key=idempotency_key, gone=gone)
    if isinstance(answer, ChatAccepted):
        return JSONResponse(
            answer.model_dump(mode="json"),
            status_code=status.HTTP_202_ACCEPTED,
            headers={"Location": answer.status_url},
        )
    return answer


@status_router.get("/{chat_id}", response_model=ChatStatus, responses=errors(401, 404, 422, 503))
async def get(
    chat_id: uuid.UUID, user: CurrentUser, chats: Chats, _: Annotated[Quota, RateLimit("default")]
) -> ChatStatus:
    """The answer to an earlier POST /api/ai/chat that was not ready in time. Only its author may see it."""
    return await chats.status(user, chat_id)
