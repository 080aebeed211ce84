"""POST /api/ai/chat: one question to a model through ChatWorkflow; GET /api/chats/{id}: its status.

The status route lives outside /api/ai/ on purpose: the limiter counts /api/ai/* at 2 a day, and
polling must not use that up.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, status
from fastapi.responses import JSONResponse
from sqlmodel import select
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.ai.errors import AIFailure
from api.deps import CurrentUser, IdempotencyKey, SessionDep, SettingsDep, TemporalClient, resource_id
from api.ratelimit import RateLimitedRoute
from models.api.chat import ChatAccepted, ChatRequest, ChatResponse, ChatStatus
from models.api.common import AIProviderName, ErrorResponse
from models.enums import AITier
from models.messages.ai import AICallPolicy, ChatInput, ChatOutcome, ModelCall, ModelReply
from models.tables import AIResponse, User
from settings import Settings
from workflows import search_attributes
from workflows.ai import ProviderRefused, Routing, provider_chain
from workflows.chat import ChatWorkflow, call_key, workflow_id

router = APIRouter(prefix="/api/ai", tags=["ai"], route_class=RateLimitedRoute)
status_router = APIRouter(prefix="/api/chats", tags=["ai"], route_class=RateLimitedRoute)

# A provider's verdict, as the HTTP answer: the user's fault (422), ours or the provider's (502, 503).
_FAILURE_STATUS = {
    AIFailure.CONTENT_REFUSED: 422,
    AIFailure.BAD_REQUEST: 502,
    AIFailure.AUTH_FAILED: 502,
    AIFailure.REQUEST_REJECTED: 502,
    AIFailure.NOT_CONFIGURED: 503,
    AIFailure.ALL_PROVIDERS_DOWN: 503,
}
_MICROS_PER_USD = 1_000_000


def call_policy(settings: Settings) -> AICallPolicy:
    return AICallPolicy(
        timeout_seconds=settings.ai_request_timeout_seconds,
        retry_initial_interval_seconds=settings.ai_retry_initial_interval_seconds,
        retry_maximum_interval_seconds=settings.ai_retry_maximum_interval_seconds,
        retry_maximum_attempts=settings.ai_retry_maximum_attempts,
    )


def providers_for(user: User, settings: Settings, model: AIProviderName | None) -> list[AITier]:
    """The user's provider chain, or the HTTP refusal (403 for a provider the tier may not use, 503 for none)."""
    requested = AITier(model.upper()) if model else None
    try:
        return provider_chain(Routing.from_settings(settings), user.tier, requested)
    except ProviderRefused as err:
        raise HTTPException(err.status_code, str(err)) from err


def chosen_providers(body: ChatRequest, user: CurrentUser, settings: SettingsDep) -> list[AITier]:
    """A dependency, so that a refusal comes before the limiter counts the request, as bad input does."""
    return providers_for(user, settings, body.model)


Providers = Annotated[list[AITier], Depends(chosen_providers)]


def status_url(chat_id: uuid.UUID) -> str:
    return f"/api/chats/{chat_id}"


@router.post(
    "/chat",
    response_model=ChatResponse,
    responses={
        202: {"model": ChatAccepted, "description": "Not answered within AI_CHAT_WAIT_SECONDS: poll status_url"},
        403: {"model": ErrorResponse, "description": "The named provider may not serve this account's tier"},
        422: {"model": ErrorResponse, "description": "Invalid request, or refused under the provider's content policy"},
        502: {"model": ErrorResponse, "description": "The provider rejected the call (bad request, credentials)"},
        503: {"model": ErrorResponse, "description": "No provider available for this account, or all stayed down"},
    },
)
async def chat(
    body: ChatRequest,
    user: CurrentUser,
    providers: Providers,
    temporal: TemporalClient,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> ChatResponse | JSONResponse:
    """Ask a model. Your service tier picks the provider unless `model` names one (EU_COMPLIANCE accounts:
    EU-resident providers only). The answer comes back if it is ready within the configured wait; else
    202 with a status URL. With an `Idempotency-Key`, a retry gets the first request's answer."""
    chat_id = resource_id("chat", f"user:{user.id}", idempotency_key)
    question = ChatInput(
        chat_id=chat_id,
        user_id=user.id,
        providers=providers,
        call=ModelCall(prompt=body.message, temperature=body.temperature, max_tokens=body.max_tokens),
        policy=call_policy(settings),
    )
    rpc_timeout = timedelta(seconds=settings.temporal_rpc_timeout_seconds)
    handle: WorkflowHandle[ChatWorkflow, ChatOutcome]
    try:
        handle = await temporal.start_workflow(
            ChatWorkflow.run,
            question,
            id=workflow_id(chat_id),
            task_queue=settings.temporal_task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=search_attributes.for_resource(chat_id, user.id),
            static_summary=f"Chat via {', '.join(tier.value.lower() for tier in providers)}",
            rpc_timeout=rpc_timeout,
        )
    except WorkflowAlreadyStartedError:  # a retry after the first request's workflow finished
        handle = temporal.get_workflow_handle_for(ChatWorkflow.run, workflow_id(chat_id))
    wait = settings.ai_chat_wait_seconds
    try:
        outcome = await asyncio.wait_for(handle.result(rpc_timeout=timedelta(seconds=wait) + rpc_timeout), wait)
    except TimeoutError:
        accepted = ChatAccepted(chat_id=chat_id, status_url=status_url(chat_id))
        return JSONResponse(
            accepted.model_dump(mode="json"),
            status_code=status.HTTP_202_ACCEPTED,
            headers={"Location": accepted.status_url},
        )
    except WorkflowFailureError as err:
        failure_type, message = _failure(err)
        raise HTTPException(_FAILURE_STATUS.get(failure_type, 502), message) from err
    return chat_response(chat_id, outcome.reply)


@status_router.get("/{chat_id}", response_model=ChatStatus, responses={404: {"model": ErrorResponse}})
async def chat_status(
    chat_id: uuid.UUID, user: CurrentUser, db: SessionDep, temporal: TemporalClient, settings: SettingsDep
) -> ChatStatus:
    """The answer to an earlier POST /api/ai/chat that was not ready in time. Only its author may see it."""
    row = (await db.exec(select(AIResponse).where(AIResponse.call_key == call_key(chat_id)))).first()
    if row is not None:
        if row.user_id != user.id:
            raise _not_found(chat_id)
        return ChatStatus(chat_id=chat_id, status="completed", result=chat_response(chat_id, _reply(row)))
    rpc_timeout = timedelta(seconds=settings.temporal_rpc_timeout_seconds)
    handle = temporal.get_workflow_handle_for(ChatWorkflow.run, workflow_id(chat_id))
    try:
        description = await handle.describe(rpc_timeout=rpc_timeout)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise _not_found(chat_id) from err
        raise
    if description.typed_search_attributes.get(search_attributes.USER_ID) != str(user.id):
        raise _not_found(chat_id)
    if description.status == WorkflowExecutionStatus.RUNNING:
        return ChatStatus(chat_id=chat_id, status="running")
    try:
        outcome = await handle.result(rpc_timeout=rpc_timeout)
    except WorkflowFailureError as err:
        return ChatStatus(chat_id=chat_id, status="failed", error=_failure(err)[1])
    return ChatStatus(chat_id=chat_id, status="completed", result=chat_response(chat_id, outcome.reply))


def chat_response(chat_id: uuid.UUID, reply: ModelReply) -> ChatResponse:
    return ChatResponse(
        chat_id=chat_id,
        response=reply.text,
        model_used=reply.model_used,
        tokens_used=reply.input_tokens + reply.output_tokens,
        processing_time_ms=reply.latency_ms,
        cost_usd=reply.cost_usd_micros / _MICROS_PER_USD,
        cost_usd_micros=reply.cost_usd_micros,
    )


def _reply(row: AIResponse) -> ModelReply:
    return ModelReply(
        tier=row.tier,
        text=row.response,
        model_used=row.model_used,
        input_tokens=row.input_tokens,
        output_tokens=row.output_tokens,
        latency_ms=row.processing_time_ms,
        cost_usd_micros=row.cost_usd_micros,
    )


def _failure(err: WorkflowFailureError) -> tuple[str | None, str]:
    cause = err.cause
    if isinstance(cause, ApplicationError):
        return cause.type, f"The AI request failed: {cause.message}"
    return None, f"The AI request failed: {cause}"


def _not_found(chat_id: uuid.UUID) -> HTTPException:
    return HTTPException(404, f"No chat {chat_id} of yours")
