"""Prototypes: POST /api/ai/prototype (an idea in words) and POST /api/ai/voice (a voice message) start the
pipeline; GET /api/prototypes and /api/prototypes/{id} show the caller's own.

Each valid submission spends the AI bucket (2 a day); a refusal (bad input, a provider this tier may not use,
voice without a transcriber) is answered before it is counted. The status routes spend the default bucket:
polling costs nothing of the AI limit. GET /api/prototypes/{id}/events streams the pipeline's progress as
Server-Sent Events, one request however long. POST /api/prototypes/{id}/revisions asks models too, so it
spends the AI bucket like a submission; its status, GET /api/prototypes/{id}/revisions/{n}, does not.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from api.deps import Bearer, CurrentUser, Files, IdempotencyKey, Prototypes, SettingsDep, get_current_user
from api.disconnect import ClientGone
from api.errors import errors
from api.ratelimit import Quota, RateLimit, RateLimitedRoute, signs_in
from api.uploads import form_flag, multipart_body, receive_file, upload_slot
from models.api.common import AIProviderName
from models.api.prototypes import (
    ApprovalRequest,
    PrototypeAccepted,
    PrototypeEventView,
    PrototypeRequest,
    PrototypeView,
    RevisionAccepted,
    RevisionRequest,
    RevisionView,
)
from models.enums import AIProvider
from services.accounts import Account
from services.prototypes import MAX_WAIT_SECONDS, EventWatchers, VoiceChains

router = APIRouter(prefix="/api/ai", tags=["prototypes"], route_class=RateLimitedRoute)
status_router = APIRouter(prefix="/api/prototypes", tags=["prototypes"], route_class=RateLimitedRoute)


def chosen_providers(body: PrototypeRequest, user: CurrentUser, prototypes: Prototypes) -> list[AIProvider]:
    """A dependency, so that a refusal comes before the limiter counts the request."""
    return prototypes.providers(user, body.model)


def chosen_revision_providers(body: RevisionRequest, user: CurrentUser, prototypes: Prototypes) -> list[AIProvider]:
    """As `chosen_providers`, for a revision: refused before the request is counted."""
    return prototypes.providers(user, body.model)


def chosen_voice_chains(
    user: CurrentUser,
    prototypes: Prototypes,
    model: Annotated[AIProviderName | None, Query(description="Preferred provider for every step")] = None,
) -> VoiceChains:
    """A dependency, so that voice without a transcriber (the offline provider) is refused before the body is read."""
    return prototypes.voice_chains(user, model)


@router.post("/prototype", status_code=status.HTTP_202_ACCEPTED, responses=errors(401, 403, 409, 422, 429, 503))
async def submit(
    body: PrototypeRequest,
    response: Response,
    user: CurrentUser,
    providers: Annotated[list[AIProvider], Depends(chosen_providers)],
    prototypes: Prototypes,
    _: Annotated[Quota, RateLimit("ai")],
    idempotency_key: IdempotencyKey = None,
) -> PrototypeAccepted:
    """Start the prototype pipeline (requirements, plan, code, review), then poll `status_url`. The result is a
    zip kept 24 hours, and an email with its link. With an `Idempotency-Key`, a retry gets the first prototype."""
    accepted = await prototypes.submit(user, body, providers, idempotency_key=idempotency_key)
    response.headers["Location"] = accepted.status_url
    return accepted


@router.post(
    "/voice",
    status_code=status.HTTP_202_ACCEPTED,
    openapi_extra=multipart_body(
        review_requirements={
            "type": "boolean",
            "default": False,
            "description": PrototypeRequest.model_fields["review_requirements"].description,
        }
    ),
    responses=errors(400, 401, 403, 408, 409, 413, 415, 422, 429, 503),
)
async def submit_voice(
    request: Request,
    response: Response,
    user: CurrentUser,
    chains: Annotated[VoiceChains, Depends(chosen_voice_chains)],
    prototypes: Prototypes,
    files: Files,
    settings: SettingsDep,
    quota: Annotated[Quota, RateLimit("ai", counts_itself=True)],
    language: Annotated[
        str | None, Query(pattern=r"^[a-z]{2}$", description="ISO-639-1 language of the message, e.g. 'cs'")
    ] = None,
    idempotency_key: IdempotencyKey = None,
) -> PrototypeAccepted:
    """Multipart, field `file`: a voice message describing the idea (at most VOICE_MAX_BYTES, an audio type in
    VOICE_ALLOWED_TYPES). It is transcribed (EU_COMPLIANCE accounts: by an EU-resident provider only), and the
    transcript goes through the same pipeline as a typed idea. The audio is kept 24 hours like any upload.
    Field `review_requirements` (`true`): pause after the requirements for approval, as a typed idea can."""
    await quota.check()  # an exhausted quota is refused before the body is read
    files.refuse_unkeepable(user)  # so is audio of an EU_COMPLIANCE account with no EU bucket to keep it in (503)
    with upload_slot(request, user.id):  # a third upload while two are in flight is refused before it is read
        received = await receive_file(
            request,
            max_bytes=settings.voice_max_bytes,
            allowed=settings.voice_allowed_types,
            spool_dir=settings.data_dir / "uploads-in-progress",
            idle_seconds=settings.upload_idle_seconds,
        )
        try:
            review = form_flag(received.form, "review_requirements")
            # A retried request (same key, same message) gets the first prototype and is not counted again. Its
            # body is read all the same: only its content tells a retry from another message under a used key.
            earlier = await prototypes.earlier(
                user, received, language=language, review_requirements=review, idempotency_key=idempotency_key
            )
            if earlier is not None:
                response.headers["Location"] = earlier.status_url
                return earlier
            await quota.spend()  # counted now that the message is valid
            accepted = await prototypes.submit_voice(
                user, received, chains, language=language, review_requirements=review, idempotency_key=idempotency_key
            )
        finally:
            await asyncio.to_thread(received.path.unlink, missing_ok=True)
    response.headers["Location"] = accepted.status_url
    return accepted


@status_router.get("", name="list", responses=errors(401, 503))  # operation id `prototypes-list`
async def list_prototypes(
    user: CurrentUser, prototypes: Prototypes, _: Annotated[Quota, RateLimit("default")]
) -> list[PrototypeView]:
    """The caller's prototypes, newest first, as last recorded (the status URL of one is live)."""
    return await prototypes.list_own(user)


@status_router.get("/{prototype_id}", responses=errors(401, 404, 422, 503))
async def get(
    prototype_id: uuid.UUID,
    user: CurrentUser,
    prototypes: Prototypes,
    gone: ClientGone,
    _: Annotated[Quota, RateLimit("default")],
    wait: Annotated[
        int,
        Query(
            ge=0,
            le=MAX_WAIT_SECONDS,
            description="Long polling: wait up to this many seconds for the pipeline to finish before answering. "
            "Fewer requests for the same news, so polling costs less of the daily request limit.",
        ),
    ] = 0,
) -> PrototypeView:
    """While the pipeline runs: its live step, progress and cost (from the workflow). After: the stored result,
    with the zip's download URL. Only its owner may see it. A client that disconnects ends its wait."""
    return await prototypes.get(user, prototype_id, wait=wait, gone=gone)


@status_router.post("/{prototype_id}/approval", responses=errors(401, 404, 409, 422, 429, 503))
async def approve(
    prototype_id: uuid.UUID,
    body: ApprovalRequest,
    user: CurrentUser,
    prototypes: Prototypes,
    _: Annotated[Quota, RateLimit("default")],
) -> PrototypeView:
    """For a prototype submitted with `review_requirements` and now AWAITING_APPROVAL: `approve: true` goes on
    (with `edited_requirements` in place of the model's, if given), `approve: false` cancels it. 409 when it is
    not waiting for an answer."""
    return await prototypes.approve(user, prototype_id, body)


@status_router.post(
    "/{prototype_id}/revisions",
    status_code=status.HTTP_202_ACCEPTED,
    responses=errors(401, 403, 404, 409, 422, 429, 503),
)
async def revise(
    prototype_id: uuid.UUID,
    body: RevisionRequest,
    response: Response,
    user: CurrentUser,
    providers: Annotated[list[AIProvider], Depends(chosen_revision_providers)],
    prototypes: Prototypes,
    _: Annotated[Quota, RateLimit("ai")],
    idempotency_key: IdempotencyKey = None,
) -> RevisionAccepted:
    """Revise a COMPLETED prototype with your feedback: the revise agent changes only the files it needs to, over
    the latest files (the previous revision's, or the prototype's), then they are checked in the sandbox and
    zipped like the prototype; an email brings the link. Counts against the AI limit. 409 while the prototype
    or an earlier revision is under way. With an `Idempotency-Key`, a retry gets the first revision."""
    accepted = await prototypes.revise(user, prototype_id, body, providers, idempotency_key=idempotency_key)
    response.headers["Location"] = accepted.status_url
    return accepted


@status_router.get("/{prototype_id}/revisions/{number}", responses=errors(401, 404, 422, 503))
async def revision(
    prototype_id: uuid.UUID,
    number: Annotated[int, Path(ge=1, le=10_000)],
    user: CurrentUser,
    prototypes: Prototypes,
    _: Annotated[Quota, RateLimit("default")],
) -> RevisionView:
    """One revision: live while it runs, the stored result after, with its zip's download URL and its own cost."""
    return await prototypes.revision(user, prototype_id, number)


EVENT_STREAM: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Server-Sent Events: `id:` the event's id, `event:` its kind, `data:` a PrototypeEventView",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}


@signs_in
async def events_caller(
    request: Request,
    prototype_id: uuid.UUID,
    credentials: Bearer,
    prototypes: Prototypes,
    token: Annotated[
        str | None,
        Query(max_length=256, description="The token of `events_url` (EventSource sends no Authorization header)"),
    ] = None,
) -> Account:
    """The stream's caller: the bearer token's when one is sent, else the one `token` was signed for (this
    prototype's stream only). Either way the request counts against that user's limit."""
    if credentials is not None or token is None:
        return await get_current_user(request, credentials)
    account = await prototypes.events_caller(token, prototype_id)
    request.state.user_id = account.id  # the limiter and the log lines know the caller, as for a bearer token
    return account


@status_router.get(
    "/{prototype_id}/events",
    response_class=StreamingResponse,
    responses={**EVENT_STREAM, **errors(401, 404, 422, 429, 503)},
)
async def events(
    request: Request,
    prototype_id: uuid.UUID,
    user: Annotated[Account, Depends(events_caller)],
    prototypes: Prototypes,
    settings: SettingsDep,
    _: Annotated[Quota, RateLimit("default")],
    last_event_id: Annotated[
        int | None,
        Header(alias="Last-Event-ID", ge=0, description="Resume after this event (EventSource's reconnects send it)"),
    ] = None,
    resume_after: Annotated[
        int | None,
        Query(
            alias="last_event_id",
            ge=0,
            description="Resume after this event, for a new EventSource (which sends no Last-Event-ID); the header "
            "wins when both come",
        ),
    ] = None,
) -> StreamingResponse:
    """The pipeline live, as Server-Sent Events: each step started and finished (provider, tokens, cost), each
        verification and fix round, then `completed` (with the download link) or `failed`, after which the stream
        ends. One request of the daily limit however long it stays open, and no request in flight for load shedding;
    at most PROTOTYPE_EVENTS_PER_USER open at once per account (PROTOTYPE_EVENTS_PER_PROCESS in all), the next a
    429 with Retry-After. It ends soon after its session is revoked (logout). It closes after
        PROTOTYPE_EVENTS_MAX_SECONDS, and a reconnect with `Last-Event-ID` gets only the events after that id. While
        no event comes, a `: keep-alive` comment every PROTOTYPE_EVENTS_KEEPALIVE_SECONDS keeps proxies from
        closing the idle stream (EventSource ignores comments). A resume from the last event or past it gets the
        ending event again. A browser opens it with `new EventSource` on the status answer's `events_url`, whose
        token opens this one stream for PROTOTYPE_EVENTS_TOKEN_SECONDS (or with the bearer token, elsewhere)."""
    after = last_event_id if last_event_id is not None else resume_after or 0
    watchers: EventWatchers = request.app.state.event_watchers
    stream = await prototypes.events(user, prototype_id, watchers, after=after)
    with watchers.slot(user.id) as release:  # past PROTOTYPE_EVENTS_PER_USER or _PER_PROCESS: a 429
        return EventStreamResponse(
            server_sent(stream, keepalive_seconds=settings.prototype_events_keepalive_seconds),
            on_close=release,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},  # no proxy holds events back
        )


class EventStreamResponse(StreamingResponse):
    """A stream that gives its place back (`on_close`) however it ends: finished, cut by its client, or never
    started because the client left first (a generator that never ran has no `finally` to do it)."""

    def __init__(self, content: AsyncIterator[str], *, on_close: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.on_close()


KEEPALIVE = ": keep-alive\n\n"
"""An SSE comment: it keeps the connection busy and is no event to the client."""


async def server_sent(events: AsyncIterator[PrototypeEventView], *, keepalive_seconds: float) -> AsyncIterator[str]:
    """The SSE wire format (a plain StreamingResponse needs no library for three fields a message), with a
    keep-alive comment whenever `keepalive_seconds` pass without an event. The next event is awaited as a task
    of its own, so a keep-alive never interrupts the wait for it."""
    upcoming = asyncio.ensure_future(anext(events))
    try:
        while True:
            arrived, _ = await asyncio.wait({upcoming}, timeout=keepalive_seconds)
            if not arrived:
                yield KEEPALIVE
                continue
            try:
                event = upcoming.result()
            except StopAsyncIteration:
                return
            yield f"id: {event.id}\nevent: {event.kind}\ndata: {event.model_dump_json()}\n\n"
            upcoming = asyncio.ensure_future(anext(events))
    finally:
        upcoming.cancel()
