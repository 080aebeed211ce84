"""Prototypes: an idea (typed, or a voice message) through PrototypeWorkflow; its status, live or stored; and
revisions of a completed one (PrototypeRevisionWorkflow), each with its own row, files and cost.

The Prototype row is committed before its workflow starts and deleted if the start fails (services.staging),
so a client never finds a row without its work. No database connection is held while Temporal is asked or
waited on: a long poll reads the row, lets the connection go, waits on the workflow, then reads again.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import timedelta
from pathlib import PurePath

from sqlmodel import col, select
from temporalio.client import WorkflowFailureError, WorkflowQueryFailedError, WorkflowUpdateFailedError
from temporalio.service import RPCError

from models import search_attributes
from models.api.common import AIProviderName
from models.api.prototypes import (
    ApprovalRequest,
    ApprovalView,
    PrototypeAccepted,
    PrototypeEventView,
    PrototypeRequest,
    PrototypeView,
    RevisionAccepted,
    RevisionRequest,
    RevisionView,
)
from models.enums import AIProvider, PrototypeStatus
from models.messages.ai import TranscriptionCall
from models.messages.prototypes import (
    ON_APPROVE,
    ON_DECLINE,
    ON_EDIT,
    PendingApproval,
    PrototypeApproval,
    PrototypeEvent,
    PrototypeOrder,
    PrototypeProgress,
    RevisionOrder,
    RevisionProgress,
)
from models.prompts import PIPELINE
from models.tables import AIResponse, File, Prototype, PrototypeRevision
from observability import metrics
from services.accounts import Account, AccountService
from services.ai import call_policy, providers_for, transcribers_for
from services.errors import Conflict, IdempotencyKeyInUse, NotFound, Unauthorized
from services.files import FileService, ReceivedFile, browser_link, download_path, kept_in_eu
from services.idempotency import claim
from services.prototype_events import EventWatchers
from services.runtime import Service
from services.security import InvalidToken, events_token_claims, sign_events_token
from services.staging import staged
from services.temporal import reaching_temporal, rpc_timeout, start_workflow
from services.waiting import wait_for_caller
from settings import Settings
from workflows.prototype import START_POLICY, PrototypeWorkflow, planned_steps, workflow_id
from workflows.prototype_steps import call_key
from workflows.revision import START_POLICY as REVISION_START_POLICY
from workflows.revision import PrototypeRevisionWorkflow
from workflows.revision import workflow_id as revision_workflow_id

log = logging.getLogger(__name__)

LIST_LIMIT = 100
MAX_WAIT_SECONDS = 60
_MICROS_PER_USD = 1_000_000
_UNDER_WAY = (PrototypeStatus.QUEUED, PrototypeStatus.RUNNING, PrototypeStatus.AWAITING_APPROVAL)


def status_url(prototype_id: uuid.UUID) -> str:
    """Outside /api/ai/ on purpose: polling costs nothing of the AI limit."""
    return f"/api/prototypes/{prototype_id}"


def events_url(settings: Settings, prototype: Prototype, session_id: uuid.UUID | None) -> str:
    """The progress stream's URL as EventSource opens it: signed for this prototype's stream, its owner and the
    session asking, for PROTOTYPE_EVENTS_TOKEN_SECONDS (an HMAC: microseconds, so every status answer gets a
    fresh one). Without a session (none asked) it is signed for the nil session, which opens nothing."""
    expires_at = int(time.time()) + settings.prototype_events_token_seconds
    session = session_id or uuid.UUID(int=0)
    token = sign_events_token(settings, prototype.user_id, session, prototype.id, expires_at)
    return f"{status_url(prototype.id)}/events?token={token}"


@dataclass(frozen=True)
class VoiceChains:
    """Who serves a voice prototype: the transcribers for the message, then the providers for every step."""

    providers: list[AIProvider]
    provider_named: bool
    transcribers: list[AIProvider]


class PrototypeService(Service):
    def providers(self, account: Account, model: AIProviderName | None) -> list[AIProvider]:
        """The account's provider chain (403 for a provider its tier may not use, 503 for none). Separate from
        `submit` so a route can refuse before the request is counted against the AI limit."""
        return providers_for(self.settings, account, model)

    def voice_chains(self, account: Account, model: AIProviderName | None) -> VoiceChains:
        """As `providers`, and a transcriber first: voice without one (the offline provider) is a 503 naming the
        setting that enables it, answered before the body is read."""
        transcribers = transcribers_for(self.settings, account)
        return VoiceChains(
            providers_for(self.settings, account, model), provider_named=model is not None, transcribers=transcribers
        )

    async def submit(
        self, account: Account, body: PrototypeRequest, providers: list[AIProvider], *, idempotency_key: str | None
    ) -> PrototypeAccepted:
        """Start the pipeline for a typed idea. With an Idempotency-Key, a retry gets the first prototype; the
        same key with a different request is a 422."""
        prototype_id = await claim(
            self.database, "prototype", f"user:{account.id}", idempotency_key, body.model_dump(mode="json")
        )
        if (earlier := await self._find(prototype_id)) is not None:
            return accepted(self.settings, earlier, account.session_id)
        prototype = Prototype(id=prototype_id, user_id=account.id, idea=body.idea, source="text")
        order = self._order(prototype, account, providers, provider_named=body.model is not None)
        await self._start(prototype, order.model_copy(update={"review_requirements": body.review_requirements}))
        return accepted(self.settings, prototype, account.session_id)

    async def earlier(
        self,
        account: Account,
        received: ReceivedFile,
        *,
        language: str | None,
        review_requirements: bool = False,
        idempotency_key: str | None,
    ) -> PrototypeAccepted | None:
        """The prototype a retried voice request (same Idempotency-Key, same message) already started, if any;
        the key with a different message, language or review choice is a 422. Asked before the request is
        counted."""
        if idempotency_key is None:
            return None
        claimed = await self._claim_voice(account, received, language, review_requirements, idempotency_key)
        earlier = await self._find(claimed)
        return accepted(self.settings, earlier, account.session_id) if earlier is not None else None

    async def submit_voice(
        self,
        account: Account,
        received: ReceivedFile,
        chains: VoiceChains,
        *,
        language: str | None,
        review_requirements: bool = False,
        idempotency_key: str | None,
    ) -> PrototypeAccepted:
        """Keep the voice message as a 24-hour file, then start the pipeline on it (transcription first); with
        `review_requirements`, it pauses after the requirements for approval, as a typed idea's does."""
        prototype_id = await self._claim_voice(account, received, language, review_requirements, idempotency_key)
        if (earlier := await self._find(prototype_id)) is not None:
            return accepted(self.settings, earlier, account.session_id)
        async with FileService(self.runtime).keep(received, account) as audio:
            prototype = Prototype(id=prototype_id, user_id=account.id, idea="", source="voice")
            message = TranscriptionCall(
                audio_key=audio.storage_key,
                filename=heard_as(audio),
                content_type=audio.content_type,
                language=language,
            )
            order = self._order(
                prototype,
                account,
                chains.providers,
                provider_named=chains.provider_named,
                audio=message,
                transcribers=chains.transcribers,
            )
            await self._start(prototype, order.model_copy(update={"review_requirements": review_requirements}))
        return accepted(self.settings, prototype, account.session_id)

    async def get(
        self, account: Account, prototype_id: uuid.UUID, *, wait: float = 0, gone: asyncio.Event | None = None
    ) -> PrototypeView:
        """While the pipeline runs: its live progress (the workflow's query). After: the stored result. With
        `wait`, hold the answer up to that many seconds for the pipeline to finish (a long poll), holding no
        database connection meanwhile; CallerGone, the wait cancelled, once `gone` is set. Someone else's
        prototype is not found."""
        prototype = await self._owned(account, prototype_id)
        if prototype.status not in _UNDER_WAY:
            return await self._view(account, prototype, stored_progress(prototype))
        handle = self.temporal.get_workflow_handle_for(PrototypeWorkflow.run, workflow_id(prototype_id))
        if wait:
            # Still running, failed, or Temporal out of reach: in every case the row says where things stand.
            with suppress(TimeoutError, WorkflowFailureError, RPCError):
                await wait_for_caller(handle.result(), wait, gone, what="prototype")
            prototype = await self._owned(account, prototype_id)
            if prototype.status not in _UNDER_WAY:
                return await self._view(account, prototype, stored_progress(prototype))
        try:
            live = await handle.query(PrototypeWorkflow.progress, rpc_timeout=rpc_timeout(self.settings))
        except (RPCError, WorkflowQueryFailedError) as err:  # no worker to answer right now: the row answers
            log.warning("prototype %s: live progress unavailable (%s); answering from the database", prototype_id, err)
            live = stored_progress(prototype)
            if prototype.status == PrototypeStatus.AWAITING_APPROVAL:
                live.approval = await self._stored_approval(prototype_id)
        return await self._view(account, prototype, live)

    async def approve(self, account: Account, prototype_id: uuid.UUID, body: ApprovalRequest) -> PrototypeView:
        """The customer's answer to requirements awaiting approval (the workflow's update, whose validator refuses
        it unless the workflow is waiting): approved, the pipeline goes on with the customer's text if given;
        declined, it is cancelled. Anything else is a 409."""
        prototype = await self._owned(account, prototype_id)
        if prototype.status != PrototypeStatus.AWAITING_APPROVAL:
            raise Conflict(f"The prototype is not waiting for approval (it is {prototype.status})")
        handle = self.temporal.get_workflow_handle_for(PrototypeWorkflow.run, workflow_id(prototype_id))
        decision = PrototypeApproval(approve=body.approve, edited_requirements=body.edited_requirements)
        with reaching_temporal():
            try:
                live = await handle.execute_update(
                    PrototypeWorkflow.approve, decision, rpc_timeout=rpc_timeout(self.settings)
                )
            except WorkflowUpdateFailedError as err:  # answered already, or no longer waiting
                raise Conflict("The prototype is not waiting for approval") from err
        return await self._view(account, await self._owned(account, prototype_id), live)

    async def events_caller(self, token: str, prototype_id: uuid.UUID) -> Account:
        """Who an `events_url` token lets in: its user, in the session it was issued in, on this prototype's
        stream only. Tampered with, expired, another prototype's, or its session revoked since: 401. Accepted
        nowhere else (no other route reads it, and it passes for no access token or download link)."""
        try:
            claims = events_token_claims(self.settings, token, prototype_id)
        except InvalidToken as err:
            raise Unauthorized("The events URL is invalid or has expired: poll the status for a fresh one") from err
        return await AccountService(self.runtime).signed_in(claims.user_id, claims.session_id)

    async def events(
        self, account: Account, prototype_id: uuid.UUID, watchers: EventWatchers, *, after: int
    ) -> AsyncIterator[PrototypeEventView]:
        """The progress stream: the workflow's events after the one with id `after`, as they happen, ending after
        `completed` or `failed`, after PROTOTYPE_EVENTS_MAX_SECONDS (the client then resumes from its last id), or
        once the caller's session is revoked. A resume from the last id or past it gets the ending event again,
        so that the client knows to stop. Ownership is checked here, before the stream opens (someone else's
        prototype is not found); the stream itself follows the prototype's one watcher in this process
        (services.prototype_events), which asks Temporal for every stream at once, and holds no connection."""
        await self._owned(account, prototype_id)
        session_id = account.session_id or uuid.UUID(int=0)  # none: the check finds it revoked at once
        return self._follow(watchers, prototype_id, session_id, after)

    async def _follow(
        self, watchers: EventWatchers, prototype_id: uuid.UUID, session_id: uuid.UUID, after: int
    ) -> AsyncIterator[PrototypeEventView]:
        closes_at = asyncio.get_running_loop().time() + self.settings.prototype_events_max_seconds
        async with watchers.watching(prototype_id, session_id) as shared:
            async for event in shared.follow(session_id, after, closes_at):
                yield event_view(self.settings, prototype_id, event)

    async def revise(
        self,
        account: Account,
        prototype_id: uuid.UUID,
        body: RevisionRequest,
        providers: list[AIProvider],
        *,
        idempotency_key: str | None,
    ) -> RevisionAccepted:
        """Start the next revision of a completed prototype: it builds on the latest files. 404 for someone
        else's prototype; 409 while the prototype or an earlier revision is under way. With an Idempotency-Key,
        a retry gets the first revision; the same key with a different request is a 422."""
        request = {"prototype_id": str(prototype_id), **body.model_dump(mode="json")}
        revision_id = await claim(self.database, "revision", f"user:{account.id}", idempotency_key, request)
        # A retry with the same key while the first is in flight may find the first's row at any of three points:
        # before anything (returned), among the prototype's revisions (returned, not "still under way"), or as the
        # primary key its own insert collides with (then the next turn finds it). A first that failed and deleted
        # its row leaves the retry to make the revision itself.
        for _ in range(3):
            async with self.database.session() as db:
                earlier = await db.get(PrototypeRevision, revision_id)
            if earlier is not None:
                return revision_accepted(earlier)
            try:
                return await self._start_revision(account, prototype_id, body, providers, revision_id)
            except IdempotencyKeyInUse:
                if idempotency_key is None:
                    raise Conflict("Another revision of this prototype was requested at the same moment") from None
        raise IdempotencyKeyInUse()

    async def _start_revision(
        self,
        account: Account,
        prototype_id: uuid.UUID,
        body: RevisionRequest,
        providers: list[AIProvider],
        revision_id: uuid.UUID,
    ) -> RevisionAccepted:
        """Its row, then its workflow; IdempotencyKeyInUse if a request with the same id (key) got there first."""
        prototype = await self._owned(account, prototype_id)
        if prototype.status != PrototypeStatus.COMPLETED:
            raise Conflict(f"Only a completed prototype can be revised (it is {prototype.status})")
        before = await self._revisions([prototype_id])
        if (same := next((r for r in before.get(prototype_id, []) if r.id == revision_id), None)) is not None:
            return revision_accepted(same)  # the first request with this key, committed a moment ago
        if any(revision.status in _UNDER_WAY for revision in before.get(prototype_id, [])):
            raise Conflict("A revision of this prototype is still under way")
        revision = PrototypeRevision(
            id=revision_id,
            prototype_id=prototype_id,
            user_id=account.id,
            number=1 + max((revision.number for revision in before.get(prototype_id, [])), default=0),
            feedback=body.feedback,
        )
        base = self._order(prototype, account, providers, provider_named=body.model is not None)
        order = RevisionOrder(
            **base.model_dump(), revision_id=revision.id, number=revision.number, feedback=revision.feedback
        )
        async with staged(self.database, revision):
            await start_workflow(
                self.temporal,
                self.settings,
                PrototypeRevisionWorkflow.run,
                order,
                id=revision_workflow_id(prototype_id, revision.number),
                policy=REVISION_START_POLICY,
                search_attributes=search_attributes.for_resource(revision.id, account.id),
                summary=f"Revision {revision.number} of a prototype",
            )
        return revision_accepted(revision)

    async def revision(self, account: Account, prototype_id: uuid.UUID, number: int) -> RevisionView:
        """One revision: live while it runs (its workflow's query), as stored after. Someone else's prototype, or
        a revision it does not have, is not found."""
        await self._owned(account, prototype_id)
        found = (await self._revisions([prototype_id])).get(prototype_id, [])
        row = next((revision for revision in found if revision.number == number), None)
        if row is None:
            raise NotFound("Revision")
        if row.status not in _UNDER_WAY:
            return revision_view(self.settings, row)
        handle = self.temporal.get_workflow_handle_for(
            PrototypeRevisionWorkflow.run, revision_workflow_id(prototype_id, number)
        )
        try:
            live = await handle.query(PrototypeRevisionWorkflow.progress, rpc_timeout=rpc_timeout(self.settings))
        except (RPCError, WorkflowQueryFailedError) as err:  # no worker to answer right now: the row answers
            log.warning("revision %s of %s: live progress unavailable (%s)", number, prototype_id, err)
            return revision_view(self.settings, row)
        return revision_view(self.settings, row, live)

    async def list_own(self, account: Account) -> list[PrototypeView]:
        """The account's prototypes, newest first, as last recorded (the status of one is live)."""
        statement = (
            select(Prototype)
            .where(col(Prototype.user_id) == account.id)
            .order_by(col(Prototype.created_at).desc())
            .limit(LIST_LIMIT)
        )
        async with self.database.session() as db:
            prototypes = (await db.exec(statement)).all()
        templated = await self._templated([prototype.id for prototype in prototypes])
        revised = await self._revisions([prototype.id for prototype in prototypes])
        return [
            prototype_view(
                self.settings,
                prototype,
                stored_progress(prototype),
                template=prototype.id in templated,
                revisions=revised.get(prototype.id, []),
                session_id=account.session_id,
            )
            for prototype in prototypes
        ]

    # --- helpers ---------------------------------------------------------------------------------------

    async def _view(self, account: Account, prototype: Prototype, progress: PrototypeProgress) -> PrototypeView:
        template = prototype.id in await self._templated([prototype.id])
        revised = await self._revisions([prototype.id])
        return prototype_view(
            self.settings,
            prototype,
            progress,
            template=template,
            revisions=revised.get(prototype.id, []),
            session_id=account.session_id,
        )

    async def _revisions(self, prototype_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[PrototypeRevision]]:
        """The prototypes' revisions, oldest first, in one read."""
        if not prototype_ids:
            return {}
        statement = (
            select(PrototypeRevision)
            .where(col(PrototypeRevision.prototype_id).in_(prototype_ids))
            .order_by(col(PrototypeRevision.number))
        )
        async with self.database.session() as db:
            rows = (await db.exec(statement)).all()
        found: dict[uuid.UUID, list[PrototypeRevision]] = {}
        for row in rows:
            found.setdefault(row.prototype_id, []).append(row)
        return found

    async def _templated(self, prototype_ids: list[uuid.UUID]) -> set[uuid.UUID]:
        """The prototypes whose every recorded model call the offline template answered: no model was asked."""
        if not prototype_ids:
            return set()
        statement = (
            select(AIResponse.prototype_id, AIResponse.tier)
            .where(col(AIResponse.prototype_id).in_(prototype_ids))
            .distinct()
        )
        async with self.database.session() as db:
            rows = (await db.exec(statement)).all()
        tiers: dict[uuid.UUID, set[AIProvider]] = {}
        for prototype_id, tier in rows:
            if prototype_id is not None:
                tiers.setdefault(prototype_id, set()).add(AIProvider(tier))
        return {prototype_id for prototype_id, used in tiers.items() if used == {AIProvider.OFFLINE}}

    async def _claim_voice(
        self,
        account: Account,
        received: ReceivedFile,
        language: str | None,
        review_requirements: bool,
        idempotency_key: str | None,
    ) -> uuid.UUID:
        """A voice message is its content, language and review choice: the same key with other audio is another
        request. The choice is named only when made, so keys claimed before it existed still match."""
        request: dict[str, str | bool | None] = {"voice_sha256": received.sha256, "language": language}
        if review_requirements:
            request["review_requirements"] = True
        return await claim(self.database, "prototype", f"user:{account.id}", idempotency_key, request)

    async def _stored_approval(self, prototype_id: uuid.UUID) -> PendingApproval | None:
        """The requirements awaiting approval as their recorded call holds them, when the workflow cannot be asked;
        when the answer is due is the workflow's to say."""
        step = PIPELINE[0].name
        statement = select(AIResponse.response).where(col(AIResponse.call_key) == call_key(prototype_id, step))
        async with self.database.session() as db:
            answer = (await db.exec(statement)).first()
        return PendingApproval.of(step, answer, answer_by=None) if answer is not None else None

    async def _find(self, prototype_id: uuid.UUID) -> Prototype | None:
        async with self.database.session() as db:
            return await db.get(Prototype, prototype_id)

    async def _owned(self, account: Account, prototype_id: uuid.UUID) -> Prototype:
        prototype = await self._find(prototype_id)
        if prototype is None or prototype.user_id != account.id:
            raise NotFound("Prototype")
        return prototype

    def _order(
        self,
        prototype: Prototype,
        account: Account,
        providers: list[AIProvider],
        *,
        provider_named: bool,
        audio: TranscriptionCall | None = None,
        transcribers: Sequence[AIProvider] = (),
    ) -> PrototypeOrder:
        return PrototypeOrder(
            prototype_id=prototype.id,
            user_id=account.id,
            idea=prototype.idea,
            audio=audio,
            providers=providers,
            provider_named=provider_named,
            transcribers=list(transcribers),
            policy=call_policy(self.settings),
            transcription_timeout_seconds=self.settings.ai_transcription_timeout_seconds,
            file_lifetime=timedelta(hours=self.settings.file_retention_hours),
            link_base_url=self.settings.public_api_url,
            fix_rounds=self.settings.prototype_fix_rounds,
            approval_window=timedelta(days=self.settings.prototype_approval_days),
            eu_resident=kept_in_eu(self.settings, account),
        )

    async def _start(self, prototype: Prototype, order: PrototypeOrder) -> None:
        """The row is committed first, then the workflow starts; if it cannot, the row is deleted again."""
        async with staged(self.database, prototype):
            await start_workflow(
                self.temporal,
                self.settings,
                PrototypeWorkflow.run,
                order,
                id=workflow_id(prototype.id),
                policy=START_POLICY,
                search_attributes=search_attributes.for_resource(prototype.id, prototype.user_id),
                summary="Prototype from a written idea" if prototype.idea else "Prototype from a voice message",
            )
        metrics.prototypes_submitted.labels(order.providers[0].value.lower() if order.providers else "none").inc()


def heard_as(audio: File) -> str:
    """The voice message's name in the workflow's input, the transcriber's request and the recorded call: its file
    id and the upload's extension (which tells the transcriber the format), not the customer's own file name."""
    suffix = PurePath(audio.original_name).suffix.lower()
    return f"{audio.id}{suffix}" if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix) else str(audio.id)


def accepted(settings: Settings, prototype: Prototype, session_id: uuid.UUID | None) -> PrototypeAccepted:
    return PrototypeAccepted(
        prototype_id=prototype.id,
        status=prototype.status,
        status_url=status_url(prototype.id),
        events_url=events_url(settings, prototype, session_id),
        workflow_id=workflow_id(prototype.id),
    )


def stored_progress(prototype: Prototype) -> PrototypeProgress:
    """The workflow's progress as its last recorded milestone left it in the row: the same shape as the live
    query. A row whose milestones predate `steps_done` (older runs) counts the steps before the current one; one
    that reviewed without a tests step was made before the tests agent, and lists the steps it went through."""
    recorded = prototype.steps_done or []
    in_turn = "review" in recorded and "tests" not in recorded
    steps = planned_steps(voice=prototype.source == "voice", parallel=not in_turn)
    if prototype.steps_done is not None:
        done = list(prototype.steps_done)
    elif prototype.status == PrototypeStatus.COMPLETED:
        done = steps
    elif prototype.current_step in steps:
        done = steps[: steps.index(prototype.current_step)]
    else:
        done = []
    return PrototypeProgress(
        prototype_id=prototype.id,
        status=prototype.status,
        idea=prototype.idea,
        steps=steps,
        steps_done=done,
        current_step=prototype.current_step,
        trying=None,
        progress_percent=prototype.progress_percent,
        cost_usd_micros=prototype.cost_usd_micros,
        file_id=prototype.file_id,
        error=prototype.error,
        verified=prototype.verified,
        fix_rounds=prototype.fix_rounds,
    )


def prototype_view(
    settings: Settings,
    prototype: Prototype,
    progress: PrototypeProgress,
    *,
    template: bool,
    revisions: Sequence[PrototypeRevision] = (),
    session_id: uuid.UUID | None,
) -> PrototypeView:
    """The one way a prototype is shown: the workflow's progress (live, or as stored), and the row's facts."""
    completed = progress.status == PrototypeStatus.COMPLETED
    return PrototypeView(
        **progress.model_dump(exclude={"prototype_id", "approval"}),
        approval=approval_view(prototype.id, progress.approval),
        prototype_id=prototype.id,
        source="voice" if prototype.source == "voice" else "text",
        template=template,
        cost_usd=progress.cost_usd_micros / _MICROS_PER_USD,
        download_url=download_path(progress.file_id) if completed and progress.file_id else None,
        download_link=browser_link(settings, progress.file_id) if completed and progress.file_id else None,
        events_url=events_url(settings, prototype, session_id),
        created_at=prototype.created_at,
        completed_at=prototype.completed_at,
        revisions=[revision_view(settings, revision) for revision in revisions],
    )


def revision_accepted(revision: PrototypeRevision) -> RevisionAccepted:
    return RevisionAccepted(
        prototype_id=revision.prototype_id,
        number=revision.number,
        status=revision.status,
        status_url=f"{status_url(revision.prototype_id)}/revisions/{revision.number}",
        workflow_id=revision_workflow_id(revision.prototype_id, revision.number),
    )


def revision_view(
    settings: Settings, revision: PrototypeRevision, live: RevisionProgress | None = None
) -> RevisionView:
    """A revision as its row last recorded it, or, while it runs, as its workflow says it stands."""
    status, current_step, cost = revision.status, revision.current_step, revision.cost_usd_micros
    verified, fix_rounds, file_id, error = revision.verified, revision.fix_rounds, revision.file_id, revision.error
    if live is not None:  # all of it from the workflow: the row may not have caught up with the same milestone
        status, current_step, cost = live.status, live.current_step, live.cost_usd_micros
        verified, fix_rounds, file_id, error = live.verified, live.fix_rounds, live.file_id, live.error
    zip_id = file_id if status == PrototypeStatus.COMPLETED else None
    return RevisionView(
        prototype_id=revision.prototype_id,
        number=revision.number,
        feedback=revision.feedback,
        status=status,
        current_step=current_step,
        trying=live.trying if live is not None else None,
        verified=verified,
        fix_rounds=fix_rounds,
        cost_usd_micros=cost,
        cost_usd=cost / _MICROS_PER_USD,
        file_id=file_id,
        download_url=download_path(zip_id) if zip_id else None,
        download_link=browser_link(settings, zip_id) if zip_id else None,
        error=error,
        created_at=revision.created_at,
        completed_at=revision.completed_at,
    )


def approval_view(prototype_id: uuid.UUID, pending: PendingApproval | None) -> ApprovalView | None:
    """The requirements awaiting approval, where to answer, and what each answer does."""
    if pending is None:
        return None
    return ApprovalView(
        **pending.model_dump(),
        approval_url=f"{status_url(prototype_id)}/approval",
        on_approve=ON_APPROVE,
        on_edit=ON_EDIT,
        on_decline=ON_DECLINE,
    )


def event_view(settings: Settings, prototype_id: uuid.UUID, event: PrototypeEvent) -> PrototypeEventView:
    """An event as the stream sends it: `completed` carries the zip's download URL and signed link,
    `approval_needed` the requirements to approve and what each answer does."""
    zip_id = event.file_id if event.kind == "completed" else None
    return PrototypeEventView(
        **event.model_dump(exclude={"approval"}),
        approval=approval_view(prototype_id, event.approval),
        download_url=download_path(zip_id) if zip_id else None,
        download_link=browser_link(settings, zip_id) if zip_id else None,
    )
