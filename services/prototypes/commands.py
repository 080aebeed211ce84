"""What a customer asks of prototypes: one from a typed idea or a voice message (PrototypeWorkflow), the answer to
requirements awaiting approval (its update), a revision of a completed one (PrototypeRevisionWorkflow).

A row is committed before its workflow starts and deleted if the start certainly failed (services.staging), so a
client never finds a row without its work; with an Idempotency-Key, a retry gets the first one.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import PurePath

from temporalio.client import WorkflowUpdateFailedError

from models import search_attributes
from models.api.common import AIProviderName
from models.api.prototypes import (
    ApprovalRequest,
    PrototypeAccepted,
    PrototypeRequest,
    PrototypeView,
    RevisionAccepted,
    RevisionRequest,
)
from models.enums import AIProvider, PrototypeStatus
from models.messages.ai import TranscriptionCall
from models.messages.prototypes import PrototypeApproval, PrototypeOrder, RevisionOrder
from models.tables import File, Prototype, PrototypeRevision
from observability import metrics
from services.accounts import Account
from services.ai import call_policy, providers_for, transcribers_for
from services.errors import Conflict, IdempotencyKeyInUse
from services.files import FileService, ReceivedFile, kept_in_eu
from services.idempotency import claim
from services.prototypes.records import PrototypeRecords
from services.prototypes.views import UNDER_WAY, accepted, revision_accepted
from services.staging import staged
from services.temporal import reaching_temporal, rpc_timeout, start_workflow
from workflows.prototype import START_POLICY, PrototypeWorkflow, workflow_id
from workflows.revision import START_POLICY as REVISION_START_POLICY
from workflows.revision import PrototypeRevisionWorkflow
from workflows.revision import workflow_id as revision_workflow_id


@dataclass(frozen=True)
class VoiceChains:
    """Who serves a voice prototype: the transcribers for the message, then the providers for every step."""

    providers: list[AIProvider]
    provider_named: bool
    transcribers: list[AIProvider]


class PrototypeCommands(PrototypeRecords):
    """What changes a prototype: its start (typed or voice), the approval of its requirements, a revision."""

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

    async def approve(self, account: Account, prototype_id: uuid.UUID, body: ApprovalRequest) -> PrototypeView:
        """The customer's answer to requirements awaiting approval (the workflow's update, whose validator refuses
        it unless the workflow is waiting): approved, the pipeline goes on with the customer's text if given;
        declined, it is cancelled. Anything else is a 409."""
        prototype = await self._owned(account, prototype_id)
        # Only an ended prototype is refused here (its workflow is closed): while it runs, the workflow decides,
        # since the row learns it is awaiting approval a moment after the status (read live) says so.
        if prototype.status not in UNDER_WAY:
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
        if any(revision.status in UNDER_WAY for revision in before.get(prototype_id, [])):
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
