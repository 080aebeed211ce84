"""Prototypes: POST /api/ai/prototype (an idea in words) and POST /api/ai/voice (a voice message) start a
PrototypeWorkflow; GET /api/prototypes and /api/prototypes/{id} show the caller's own.

The submissions are under /api/ai/, so each valid one counts against the AI limit (2 a day); a refusal
(bad input, a provider this tier may not use, voice without a transcriber) is answered before it is counted.
The status routes are outside /api/ai/ on purpose: polling costs nothing of that limit.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client, WorkflowFailureError, WorkflowQueryFailedError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError

from api.deps import (
    CurrentUser,
    IdempotencyKey,
    SessionDep,
    SettingsDep,
    TemporalClient,
    resource_id,
    stage,
)
from api.ratelimit import RateLimitedRoute, counts_itself, enforce
from api.routes.ai import call_policy, providers_for
from api.uploads import MULTIPART_BODY, receive_file
from models.api.common import AIProviderName, ErrorResponse
from models.api.prototypes import PrototypeAccepted, PrototypeRequest, PrototypeView
from models.enums import AITier, PrototypeStatus
from models.messages.ai import TranscriptionCall
from models.messages.prototypes import PrototypeOrder, PrototypeProgress
from models.tables import Prototype, User
from services.files import FileService, download_path
from settings import Settings
from workflows import search_attributes
from workflows.ai import ProviderRefused, Routing, transcription_chain
from workflows.prototype import PrototypeWorkflow, planned_steps, workflow_id

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/ai", tags=["prototypes"], route_class=RateLimitedRoute)
status_router = APIRouter(prefix="/api/prototypes", tags=["prototypes"], route_class=RateLimitedRoute)

_MICROS_PER_USD = 1_000_000
_LIST_LIMIT = 100
_MAX_WAIT_SECONDS = 60
_REFUSALS = {
    403: {"model": ErrorResponse, "description": "The named provider may not serve this account's tier"},
    409: {"model": ErrorResponse, "description": "A request with this Idempotency-Key is still in progress"},
    503: {"model": ErrorResponse, "description": "No provider (or, for voice, no transcriber) for this account"},
}


def status_url(prototype_id: uuid.UUID) -> str:
    return f"/api/prototypes/{prototype_id}"


def prototype_providers(body: PrototypeRequest, user: CurrentUser, settings: SettingsDep) -> list[AITier]:
    """A dependency, so that a refusal comes before the limiter counts the request."""
    return providers_for(user, settings, body.model)


@dataclass(frozen=True)
class VoiceChains:
    providers: list[AITier]
    provider_named: bool
    transcribers: list[AITier]


def voice_chains(
    user: CurrentUser,
    settings: SettingsDep,
    model: Annotated[AIProviderName | None, Query(description="Preferred provider for every step")] = None,
) -> VoiceChains:
    """A dependency, so that voice without a transcriber (the offline tier) is refused before the body is read."""
    try:
        transcribers = transcription_chain(Routing.from_settings(settings), user.tier)
    except ProviderRefused as err:
        raise HTTPException(err.status_code, str(err)) from err
    return VoiceChains(
        providers_for(user, settings, model), provider_named=model is not None, transcribers=transcribers
    )


@router.post("/prototype", status_code=status.HTTP_202_ACCEPTED, response_model=PrototypeAccepted, responses=_REFUSALS)
async def submit_prototype(
    body: PrototypeRequest,
    response: Response,
    user: CurrentUser,
    providers: Annotated[list[AITier], Depends(prototype_providers)],
    db: SessionDep,
    temporal: TemporalClient,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> PrototypeAccepted:
    """Start the prototype pipeline (requirements, plan, code, review), then poll `status_url`. The result is a
    zip kept 24 hours, and an email with its link. With an `Idempotency-Key`, a retry gets the first prototype."""
    prototype_id = resource_id("prototype", f"user:{user.id}", idempotency_key)
    prototype = await db.get(Prototype, prototype_id)
    if prototype is None:
        prototype = Prototype(id=prototype_id, user_id=user.id, idea=body.idea, source="text")
        order = _order(prototype, user, settings, providers, provider_named=body.model is not None)
        await _start(db, temporal, settings, prototype, order)
    return _accepted(prototype, response)


@router.post(
    "/voice",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=PrototypeAccepted,
    openapi_extra=MULTIPART_BODY,
    responses={
        **_REFUSALS,
        413: {"model": ErrorResponse, "description": "Larger than VOICE_MAX_BYTES"},
        415: {"model": ErrorResponse, "description": "Not an audio type in VOICE_ALLOWED_TYPES, or not audio at all"},
    },
)
@counts_itself
async def submit_voice(
    request: Request,
    response: Response,
    user: CurrentUser,
    chains: Annotated[VoiceChains, Depends(voice_chains)],
    db: SessionDep,
    temporal: TemporalClient,
    settings: SettingsDep,
    language: Annotated[
        str | None, Query(pattern=r"^[a-z]{2}$", description="ISO-639-1 language of the message, e.g. 'cs'")
    ] = None,
    idempotency_key: IdempotencyKey = None,
) -> PrototypeAccepted:
    """Multipart, field `file`: a voice message describing the idea. It is transcribed (EU_COMPLIANCE accounts:
    by an EU-resident provider only), and the transcript goes through the same pipeline as a typed idea. The
    audio is kept 24 hours like any upload."""
    await enforce(request, count=False)  # an exhausted quota is refused before the body is read
    prototype_id = resource_id("prototype", f"user:{user.id}", idempotency_key)
    if (earlier := await db.get(Prototype, prototype_id)) is not None:
        return _accepted(earlier, response)
    received = await receive_file(
        request,
        max_bytes=settings.voice_max_bytes,
        allowed=settings.voice_allowed_types,
        spool_dir=settings.data_dir / "uploads-in-progress",
    )
    try:
        await enforce(request)  # counted now that the message is valid
        async with FileService(request.app.state.runtime).keep(received, user) as audio:
            prototype = Prototype(id=prototype_id, user_id=user.id, idea="", source="voice")
            message = TranscriptionCall(
                audio_key=audio.storage_key,
                filename=audio.original_name,
                content_type=audio.content_type,
                language=language,
            )
            order = _order(
                prototype,
                user,
                settings,
                chains.providers,
                provider_named=chains.provider_named,
                audio=message,
                transcribers=chains.transcribers,
            )
            await _start(db, temporal, settings, prototype, order)
    finally:
        await asyncio.to_thread(received.path.unlink, missing_ok=True)
    return _accepted(prototype, response)


def _order(
    prototype: Prototype,
    user: User,
    settings: Settings,
    providers: list[AITier],
    *,
    provider_named: bool,
    audio: TranscriptionCall | None = None,
    transcribers: Sequence[AITier] = (),
) -> PrototypeOrder:
    return PrototypeOrder(
        prototype_id=prototype.id,
        user_id=user.id,
        email=user.email,
        idea=prototype.idea,
        audio=audio,
        providers=providers,
        provider_named=provider_named,
        transcribers=list(transcribers),
        policy=call_policy(settings),
        transcription_timeout_seconds=settings.ai_transcription_timeout_seconds,
        file_lifetime=timedelta(hours=settings.file_retention_hours),
        link_base_url=settings.public_api_url,
    )


async def _start(
    db: AsyncSession, temporal: Client, settings: Settings, prototype: Prototype, order: PrototypeOrder
) -> None:
    """Write the row, start its workflow, and commit only once the workflow exists: no row without its work."""
    await stage(db, prototype)
    await temporal.start_workflow(
        PrototypeWorkflow.run,
        order,
        id=workflow_id(prototype.id),
        task_queue=settings.temporal_task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        # A run whose request never committed its row fails; a retried request may then start anew.
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
        search_attributes=search_attributes.for_resource(prototype.id, prototype.user_id),
        static_summary=f"Prototype: {' '.join(prototype.idea.split())[:80]}"
        if prototype.idea
        else "Prototype by voice",
        rpc_timeout=timedelta(seconds=settings.temporal_rpc_timeout_seconds),
    )
    await db.commit()


def _accepted(prototype: Prototype, response: Response) -> PrototypeAccepted:
    response.headers["Location"] = status_url(prototype.id)
    return PrototypeAccepted(
        prototype_id=prototype.id,
        status=prototype.status,
        status_url=status_url(prototype.id),
        workflow_id=workflow_id(prototype.id),
    )


# --- status ---------------------------------------------------------------------------------------


@status_router.get("", response_model=list[PrototypeView])
async def list_prototypes(user: CurrentUser, db: SessionDep) -> list[PrototypeView]:
    """The caller's prototypes, newest first, as last recorded (the status URL of one is live)."""
    statement = (
        select(Prototype)
        .where(col(Prototype.user_id) == user.id)
        .order_by(col(Prototype.created_at).desc())
        .limit(_LIST_LIMIT)
    )
    return [_view(prototype) for prototype in (await db.exec(statement)).all()]


@status_router.get("/{prototype_id}", response_model=PrototypeView, responses={404: {"model": ErrorResponse}})
async def prototype_status(
    prototype_id: uuid.UUID,
    user: CurrentUser,
    db: SessionDep,
    temporal: TemporalClient,
    settings: SettingsDep,
    wait: Annotated[
        int,
        Query(
            ge=0,
            le=_MAX_WAIT_SECONDS,
            description="Long polling: wait up to this many seconds for the pipeline to finish before answering. "
            "Fewer requests for the same news, so polling costs less of the daily request limit.",
        ),
    ] = 0,
) -> PrototypeView:
    """While the pipeline runs: its live step, progress and cost (from the workflow). After: the stored result,
    with the zip's download URL. Only its owner may see it."""
    prototype = await db.get(Prototype, prototype_id)
    if prototype is None or prototype.user_id != user.id:
        raise HTTPException(404, f"No prototype {prototype_id} of yours")
    if prototype.status in (PrototypeStatus.QUEUED, PrototypeStatus.RUNNING):
        handle = temporal.get_workflow_handle_for(PrototypeWorkflow.run, workflow_id(prototype_id))
        if wait:
            with suppress(TimeoutError, WorkflowFailureError):  # still running, or failed: the row says which
                await asyncio.wait_for(handle.result(), wait)
            await db.refresh(prototype)
            if prototype.status not in (PrototypeStatus.QUEUED, PrototypeStatus.RUNNING):
                return _view(prototype)
        try:
            live = await handle.query(
                PrototypeWorkflow.progress, rpc_timeout=timedelta(seconds=settings.temporal_rpc_timeout_seconds)
            )
        except (RPCError, WorkflowQueryFailedError) as err:  # no worker to answer right now: the row answers
            log.warning("prototype %s: live progress unavailable (%s); answering from the database", prototype_id, err)
        else:
            return _view(prototype, live)
    return _view(prototype)


def _view(prototype: Prototype, live: PrototypeProgress | None = None) -> PrototypeView:
    steps = planned_steps(voice=prototype.source == "voice")
    if live is None:
        live = PrototypeProgress(
            prototype_id=prototype.id,
            status=prototype.status,
            idea=prototype.idea,
            steps=steps,
            steps_done=_steps_done(steps, prototype),
            current_step=prototype.current_step,
            trying=None,
            progress_percent=prototype.progress_percent,
            cost_usd_micros=prototype.cost_usd_micros,
            file_id=prototype.file_id,
            error=prototype.error,
        )
    return PrototypeView(
        **live.model_dump(exclude={"prototype_id"}),
        prototype_id=prototype.id,
        source=prototype.source,  # type: ignore[arg-type]
        cost_usd=live.cost_usd_micros / _MICROS_PER_USD,
        download_url=download_path(live.file_id) if live.status == PrototypeStatus.COMPLETED and live.file_id else None,
        created_at=prototype.created_at,
        completed_at=prototype.completed_at,
    )


def _steps_done(steps: list[str], prototype: Prototype) -> list[str]:
    """Steps run in order: every one before the current step is done (all of them, once completed)."""
    if prototype.status == PrototypeStatus.COMPLETED:
        return steps
    if prototype.current_step in steps:
        return steps[: steps.index(prototype.current_step)]
    return []
