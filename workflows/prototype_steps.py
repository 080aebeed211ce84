"""What PrototypeWorkflow and PrototypeRevisionWorkflow share: checking code in the sandbox with fix rounds,
zipping the files with their retention timer first, recording each model call, and the event log.

`CodeRounds` is a mixin of steps over the workflow's own state (declared below; each workflow's __init__ sets
it). A workflow names its calls through `_named` (the prototype's own steps as they are, a revision's as
`revision-<n>-<step>`), its zip through `_zip`, and records its own row through `_record_milestone`.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, FailureError

from workflows.timeouts import DATABASE_CALL, HEARTBEAT

with workflow.unsafe.imports_passed_through():
    from activities.ai.records import AIRecordActivities
    from activities.packaging import PackagingActivities
    from activities.sandbox import SandboxActivities
    from activities.storage import storage_key
    from models.enums import AIProvider
    from models.messages.ai import AICallRecord, ModelReply
    from models.messages.email import StoredImage, UserEmail
    from models.messages.prototypes import (
        PrototypeEvent,
        PrototypeEventKind,
        PrototypeOrder,
        PrototypePackage,
        StepAnswer,
        StoredPreview,
        VerificationRequest,
        VerificationResult,
    )
    from models.prompts import FIX, AgentStep
    from models.untrusted import quoted
    from workflows.ai import ModelCaller
    from workflows.mail import send_to_account
    from workflows.retention import FileRetentionWorkflow, retain_generated_file

RECORD_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))
PACKAGE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))
VERIFY_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=3)
VERIFY_TIMEOUT = timedelta(minutes=10)
"""Longer than the sandbox's own limits (a syntax pass and a pytest run, each killed at its wall limit)."""
PACKAGE_DEADLINE = timedelta(minutes=30)
"""Storage still failing after this long: the prototype fails (and says so) rather than wait for ever."""
PACKAGING = "package"
PREVIEW_FILE = "preview-file"
"""The patch marker: runs that have it keep the app's screenshot as a PNG file of its own, under its own retention
timer (a child workflow more); runs begun before never had a screenshot to keep."""
_PREVIEW_NAMESPACE = uuid.UUID("0c6f1a52-7e2b-4d59-9b0e-5a8f3c2d1e47")


def preview_file_id(zip_id: uuid.UUID) -> uuid.UUID:
    """The screenshot's file id, derived from its zip's: a replayed or retried workflow names the same file."""
    return uuid.uuid5(_PREVIEW_NAMESPACE, str(zip_id))


def why_no_preview(verification: VerificationResult | None) -> str | None:
    """Why a prototype has no picture of its app, for people (None: it has one, or it was never checked)."""
    if verification is None or verification.preview is not None:
        return None
    if verification.preview_unavailable is not None:
        return verification.preview_unavailable
    if not verification.sandbox_available or verification.sandbox_error is not None:
        return "Nothing was run: the sandbox could not run on this server, so the app was not started"
    if not verification.passed:
        return "The code did not pass its checks, so the app was not started"
    return "No picture of the app was taken on this server"


def call_key(prototype_id: uuid.UUID, step: str) -> str:
    """One AIResponse row per step of a prototype, however often a write is retried."""
    return f"prototype-{prototype_id}-{step}"


def step_providers(order: PrototypeOrder, step: AgentStep) -> list[AIProvider]:
    """The user's chain, with the step's preferred provider first if the chain has it and the request named none."""
    if order.provider_named or step.prefer not in order.providers:
        return list(order.providers)
    return [step.prefer, *(tier for tier in order.providers if tier != step.prefer)]


class CodeRounds:
    """The shared steps; the state they read and write is the workflow's own."""

    _idea: str
    _done: list[str]
    _cost_micros: int
    _file_id: uuid.UUID | None
    _download_token: str
    _preview: StoredPreview | None
    _preview_token: str | None
    _preview_unavailable: str | None
    _caller: ModelCaller | None
    _verification: VerificationResult | None
    _fix_rounds: int
    _events: list[PrototypeEvent]
    _mail_by_id: bool
    """workflow.patched(EMAIL_BY_USER_ID), taken at the start: False only for runs whose order carries the address."""

    def _named(self, step: str) -> str:
        """The step's name in the records (its AIResponse's step and call key) and the event log."""
        return step

    def _zip(self, order: PrototypeOrder) -> tuple[uuid.UUID, dict[str, Any]]:
        """The zip's file id (derived, so a replay names the same file) and what else its package says."""
        raise NotImplementedError

    async def _record_milestone(self) -> None:
        """Write where things stand to the workflow's row."""
        raise NotImplementedError

    async def _email(self, order: PrototypeOrder, email: UserEmail, summary: str) -> None:
        """To the account, whose address the activity reads; a run begun before sends to the one its order holds."""
        await send_to_account(email, None if self._mail_by_id else order.email, summary)

    async def _verify_and_fix(
        self, order: PrototypeOrder, step: AgentStep, texts: dict[str, str], answers: list[StepAnswer]
    ) -> str:
        """Check the code; while checks fail and rounds remain, the code agent gets the errors and answers with
        the files it changed. Returns the code as the later steps read it: every answer, later files last."""
        assert self._caller is not None
        code = [texts[step.name]]
        while True:
            self._verification = await self._verify(order, code)
            verdict = self._verification
            failed = [check.name for check in verdict.checks if not check.passed]
            self._event(
                "verification",
                step=step.name,
                round=verdict.round,
                verified=verdict.passed,
                failed_checks=failed,
                error=verdict.sandbox_error,
            )
            if verdict.passed or self._fix_rounds >= order.fix_rounds or not _fixable(verdict):
                break
            self._fix_rounds += 1
            name = self._named(f"{FIX.name}-{self._fix_rounds}")
            errors = quoted(self._verification.failures())  # the code's own output: untrusted data
            call = FIX.call(self._idea, {**texts, "code": "\n\n".join(code), "errors": errors})
            reply = await self._caller.ask(step_providers(order, step), call, purpose=name)
            await self._record_call(order, name, call.prompt, reply)
            code.append(reply.text)
            answers.append(
                StepAnswer(
                    step=name,
                    document=f"FIX-{self._fix_rounds}.md",
                    text=reply.text,
                    model_used=reply.model_used,
                    cost_usd_micros=reply.cost_usd_micros,
                    holds_files=True,
                )
            )
            self._cost_micros += reply.cost_usd_micros
            self._event("fix_round", step=name, round=self._fix_rounds, **call_fields(reply))
            await self._record_milestone()
        return "\n\n".join(code)

    async def _verify(self, order: PrototypeOrder, code: list[str]) -> VerificationResult:
        """The sandbox's verdict; a sandbox that cannot run at all is a failed check too, never a silent pass."""
        request = VerificationRequest(prototype_id=order.prototype_id, round=self._fix_rounds, code_answers=code)
        try:
            return await workflow.execute_activity_method(
                SandboxActivities.verify_code,
                request,
                start_to_close_timeout=VERIFY_TIMEOUT,
                heartbeat_timeout=HEARTBEAT,
                retry_policy=VERIFY_RETRY,
                summary=f"verify the code in a sandbox (round {self._fix_rounds})",
            )
        except ActivityError as err:
            return VerificationResult(
                round=self._fix_rounds,
                passed=False,
                files=[],
                checks=[],
                network_isolated=False,
                sandbox_error=failure_reason(err),
            )

    async def _package(self, order: PrototypeOrder, answers: list[StepAnswer], transcribed_by: str | None) -> datetime:
        """The zip's retention timer first, then the zip: nothing is stored without the workflow that deletes it."""
        file_id, extras = self._zip(order)
        made_at = workflow.now()
        expires_at = made_at + order.file_lifetime
        key = storage_key(file_id, eu=order.eu_resident)
        retention = await retain_generated_file(
            file_id, order.user_id, key, expires_at, f"Delete the prototype's zip at {expires_at:%Y-%m-%d %H:%M} UTC"
        )
        picture = self._verification.preview if self._verification is not None else None
        kept_picture = picture is not None and workflow.patched(PREVIEW_FILE)
        preview_id = preview_file_id(file_id) if kept_picture else None
        preview_key = storage_key(preview_id, eu=order.eu_resident) if preview_id is not None else None
        retained = [retention]
        if preview_id is not None and preview_key is not None:  # the picture's timer before the picture, as the zip's
            summary = f"Delete the prototype's picture at {expires_at:%Y-%m-%d %H:%M} UTC"
            retained.append(await retain_generated_file(preview_id, order.user_id, preview_key, expires_at, summary))
        package = PrototypePackage(
            prototype_id=order.prototype_id,
            user_id=order.user_id,
            file_id=file_id,
            idea=self._idea,
            source="voice" if order.audio is not None else "text",
            transcribed_by=transcribed_by,
            answers=answers,
            made_at=made_at,
            expires_at=expires_at,
            verification=self._verification,
            fix_rounds=self._fix_rounds,
            storage_key=key,
            preview_file_id=preview_id,
            preview_storage_key=preview_key,
            **extras,
        )
        try:
            packaged = await workflow.execute_activity_method(
                PackagingActivities.package_prototype,
                package,
                start_to_close_timeout=timedelta(minutes=2),
                heartbeat_timeout=HEARTBEAT,
                schedule_to_close_timeout=PACKAGE_DEADLINE,
                retry_policy=PACKAGE_RETRY,
                summary="zip and store the files",
            )
        except ActivityError:
            for timer in retained:  # whatever was stored goes now
                await timer.signal(FileRetentionWorkflow.delete_now)
            raise
        self._file_id = file_id
        self._download_token = packaged.download_token
        if picture is not None and preview_id is not None:
            self._preview = StoredPreview(
                file_id=preview_id, width=picture.width, height=picture.height, page_url_path=picture.page_url_path
            )
            self._preview_token = packaged.preview_token
        self._preview_unavailable = why_no_preview(self._verification)
        self._done.append(PACKAGING)
        self._event("step_finished", step=PACKAGING, file_id=file_id)
        return expires_at

    async def _record_call(self, order: PrototypeOrder, step: str, prompt: str, reply: ModelReply) -> None:
        await workflow.execute_activity_method(
            AIRecordActivities.record_ai_call,
            AICallRecord(
                call_key=call_key(order.prototype_id, step),
                user_id=order.user_id,
                prototype_id=order.prototype_id,
                step=step,
                prompt=prompt,
                reply=reply,
            ),
            start_to_close_timeout=DATABASE_CALL,
            retry_policy=RECORD_RETRY,
            summary=f"record the {step} call",
        )

    def _event(self, kind: PrototypeEventKind, **fields: Any) -> None:
        """Log a milestone for the progress stream: in memory only, so no command changes and old histories
        replay; a replay rebuilds the same log, in the same order, with the same clock."""
        self._events.append(PrototypeEvent(id=len(self._events) + 1, kind=kind, at=workflow.now(), **fields))

    def _ending_fields(self) -> dict[str, Any]:
        """What the `completed` event says beyond the zip: the picture of the app, or why there is none."""
        preview_id = self._preview.file_id if self._preview is not None else None
        return {
            "file_id": self._file_id,
            "preview_file_id": preview_id,
            "preview_unavailable": self._preview_unavailable,
        }

    def _picture(self, order: PrototypeOrder) -> StoredImage | None:
        """The picture the ready email shows in place, read from storage by the email activity."""
        if self._preview is None:
            return None
        key = storage_key(self._preview.file_id, eu=order.eu_resident)
        return StoredImage(content_id=f"preview-{self._preview.file_id}@statex.local", storage_key=key)

    def _verified(self) -> bool | None:
        return self._verification.passed if self._verification is not None else None


def call_fields(reply: ModelReply) -> dict[str, Any]:
    """Who answered a call, and what it cost, as an event tells it."""
    return {
        "provider": reply.tier,
        "model_used": reply.model_used,
        "input_tokens": reply.input_tokens,
        "output_tokens": reply.output_tokens,
        "cost_usd_micros": reply.cost_usd_micros,
    }


def _fixable(verdict: VerificationResult) -> bool:
    """A fix round answers failing checks: not a sandbox that could not run, nor an answer with no files at all
    (its text ships as it is, marked not verified)."""
    return verdict.sandbox_error is None and bool(verdict.files)


def failure_reason(err: FailureError) -> str:
    """The innermost message: the provider's or the storage's own words."""
    cause: BaseException = err
    while isinstance(cause, ActivityError) and cause.cause is not None:
        cause = cause.cause
    return cause.message if isinstance(cause, FailureError) else str(cause)
