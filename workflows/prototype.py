"""PrototypeWorkflow: an app idea (typed, or a voice message) through a pipeline of agents, zipped, emailed.

The pipeline is data (PIPELINE): each step is one model call with its own role, prompt, temperature, token
budget and preferred provider. Each call walks the user's provider chain (workflows.ai.ModelCaller), so the
Temporal UI lists every attempt under the step's name, and is recorded once as an AIResponse row
(`prototype-<id>-<step>`). A voice message is transcribed first, and its transcript becomes the idea.

The agents run in stages (models.prompts.STAGES): the code and tests agents both work from the plan, so they
run at the same time, two model calls in flight at once (the Temporal UI shows both pending), each recorded as
its own row with its own cost and events; a failure of one cancels the other. Runs begun by code without the
tests agent (no "parallel-agents" marker in their history) ask one agent at a time (IN_TURN).

After the code and tests, their files are checked together in a sandbox (activities.sandbox: compiled, parsed,
the tests run with pytest); failing checks go back to the code agent with the errors, which may change code or
tests, at most `order.fix_rounds` times, each round a recorded call of its own (`prototype-<id>-fix-<n>`).
Whether the code ends verified is in the status, the zip (VERIFICATION.md) and the email. Runs begun before
this existed (no "verify-and-fix" marker) take the old path and are never verified.

The answers are zipped by an activity and stored as a file that lives 24 hours like any upload: its
FileRetentionWorkflow starts (as an abandoned child) before the zip is stored, so nothing is stored without
its timer. Then the Prototype row is marked COMPLETED and the customer gets one email with the link; on a
failure (a provider's refusal, every provider down) the row is marked FAILED with the reason and the customer
gets one email saying why. The row follows the workflow at each milestone; the `progress` query is live, and
the `events` query is the log the progress stream (GET /api/prototypes/{id}/events) sends, kept in memory.
The verify-and-fix rounds, the packaging and the call records are shared with revisions
(workflows.prototype_steps, workflows.revision).

With `order.review_requirements` the workflow waits after the requirements (AWAITING_APPROVAL) for the
`approve` update, at most `order.approval_window`; declined or unanswered, it ends CANCELLED. While it waits, the
requirements it asks about (cut to a bound: model output) are in the `progress` query, the `approval_needed` event
and, since the "approval-email" marker, an email to the customer; once answered, an email not yet sent is
cancelled, since its question is moot.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Sequence
from contextlib import suppress
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.timeouts import DATABASE_CALL

with workflow.unsafe.imports_passed_through():
    from activities.records import RecordActivities
    from models.enums import PrototypeStatus
    from models.messages.ai import ModelCall, ModelReply, TranscriptionCall
    from models.messages.prototypes import (
        PendingApproval,
        PrototypeApproval,
        PrototypeEvent,
        PrototypeMilestone,
        PrototypeOrder,
        PrototypeProgress,
        StepAnswer,
        StoredPreview,
        VerificationResult,
    )
    from models.prompts import IN_TURN, PIPELINE, STAGES, AgentStep
    from workflows.ai import ModelCaller
    from workflows.emails import approval_email, cancelled_email, failure_email, ready_email
    from workflows.mail import EMAIL_BY_USER_ID
    from workflows.prototype_steps import (
        PACKAGING,
        RECORD_RETRY,
        CodeRounds,
        call_fields,
        failure_reason,
        step_providers,
    )
    from workflows.starting import ONCE_PER_RESOURCE

VERIFY_AND_FIX = "verify-and-fix"
"""The patch marker: runs that have it verify the code and may run fix rounds; older histories do not."""
PARALLEL_AGENTS = "parallel-agents"
"""The patch marker: runs that have it ask the agents of a stage at the same time, the tests agent among them."""
ROW_DEADLINE = timedelta(minutes=2)
"""The row is committed before the start (services.staging), so it is there at once; the deadline only guards
runs started by an older API, which committed the row after the start and might never have."""
APPROVAL_EMAIL = "approval-email"
"""The patch marker: runs that have it email the customer the requirements awaiting approval; older ones do not."""
TRANSCRIPTION = "transcription"
_FILE_ID_NAMESPACE = uuid.UUID("6a1d2f0e-93c4-4b8e-8f5a-2c7d9e4b1a30")
_FAILURES = (ActivityError, ApplicationError)


def workflow_id(prototype_id: uuid.UUID) -> str:
    return f"prototype-{prototype_id}"


START_POLICY = ONCE_PER_RESOURCE
"""The id comes from the prototype's row id (an Idempotency-Key's, or fresh), and the row is committed before the
start and deleted if the start fails (services.staging). So a second start with the same id is a retried request
for the same prototype and gets the existing run, running or closed; no run ever exists without its row, so the
old ALLOW_DUPLICATE_FAILED_ONLY (a failed run whose row never committed could be started again) is not needed,
and a failed prototype is never silently run again under the same id."""


def result_file_id(prototype_id: uuid.UUID) -> uuid.UUID:
    """The zip's file id: derived, so a replayed or retried workflow names the same file."""
    return uuid.uuid5(_FILE_ID_NAMESPACE, f"prototype-{prototype_id}")


def agent_stages(parallel: bool) -> tuple[tuple[AgentStep, ...], ...]:
    """The agents a run asks, stage by stage: runs begun before the "parallel-agents" marker ask them in turn."""
    return STAGES if parallel else IN_TURN


def planned_stages(voice: bool, parallel: bool = True) -> list[list[str]]:
    """The steps a prototype goes through, stage by stage: the steps of a stage run at the same time."""
    agents = [[step.name for step in stage] for stage in agent_stages(parallel)]
    return [*([[TRANSCRIPTION]] if voice else []), *agents, [PACKAGING]]


def planned_steps(voice: bool, parallel: bool = True) -> list[str]:
    """The steps a prototype goes through, as the status shows them."""
    return [step for stage in planned_stages(voice, parallel) for step in stage]


@workflow.defn
class PrototypeWorkflow(CodeRounds):
    def __init__(self) -> None:
        self._prototype_id: uuid.UUID | None = None
        self._status = PrototypeStatus.QUEUED
        self._idea = ""
        self._stages: list[list[str]] = []
        self._steps: list[str] = []
        self._done: list[str] = []
        self._running: list[str] = []
        self._current: str | None = None
        self._cost_micros = 0
        self._file_id: uuid.UUID | None = None
        self._download_token = ""
        self._preview: StoredPreview | None = None
        self._preview_token: str | None = None
        self._preview_unavailable: str | None = None
        self._error: str | None = None
        self._caller: ModelCaller | None = None
        self._verifies = False
        self._parallel = False
        self._verification: VerificationResult | None = None
        self._fix_rounds = 0
        self._events: list[PrototypeEvent] = []
        self._approval: PrototypeApproval | None = None
        self._pending: PendingApproval | None = None
        self._mail_by_id = True

    @workflow.run
    async def run(self, order: PrototypeOrder) -> PrototypeProgress:
        self._prototype_id, self._idea, self._caller = order.prototype_id, order.idea, ModelCaller(order.policy)
        self._verifies = workflow.patched(VERIFY_AND_FIX)  # decided once, at the start: a run is old or new throughout
        self._parallel = workflow.patched(PARALLEL_AGENTS)
        self._mail_by_id = workflow.patched(EMAIL_BY_USER_ID)
        self._stages = planned_stages(voice=order.audio is not None, parallel=self._parallel)
        self._steps = [step for stage in self._stages for step in stage]
        self._status = PrototypeStatus.RUNNING
        self._start_next()
        try:
            await self._record_milestone(deadline=ROW_DEADLINE)
        except ActivityError as err:
            raise ApplicationError(
                "The prototype's row never appeared (the request that started this failed); no model was asked",
                non_retryable=True,
            ) from err
        try:
            transcribed_by = await self._transcribe(order, order.audio) if order.audio is not None else None
            answers = await self._ask_agents(order)
            expires_at = await self._package(order, answers, transcribed_by)
        except _FAILURES as err:
            await self._fail(order, failure_reason(err))
            raise
        except _Cancelled as cancelled:
            await self._cancel(order, cancelled.reason, timed_out=cancelled.timed_out)
            return self.progress()
        self._status, self._current = PrototypeStatus.COMPLETED, None
        await self._record_milestone()
        self._event("completed", cost_usd_micros=self._cost_micros, verified=self._verified(), **self._ending_fields())
        ready = ready_email(
            order,
            self.progress(),
            expires_at,
            answers,
            self._download_token,
            self._verification,
            picture=self._picture(order),
            preview_token=self._preview_token,
        )
        await self._email(order, ready, "email the download link")
        return self.progress()

    # --- the steps -------------------------------------------------------------------------------------

    async def _transcribe(self, order: PrototypeOrder, audio: TranscriptionCall) -> str:
        """The transcript becomes the idea; returns the model that heard it."""
        assert self._caller is not None
        transcript = await self._caller.transcribe(
            order.transcribers, audio, timeout_seconds=order.transcription_timeout_seconds
        )
        if not transcript.text.strip():
            raise ApplicationError("The voice message holds no speech that could be transcribed", type="NoSpeech")
        reply = ModelReply(
            tier=transcript.tier,
            text=transcript.text.strip(),
            model_used=transcript.model_used,
            input_tokens=0,
            output_tokens=0,
            latency_ms=transcript.latency_ms,
            cost_usd_micros=transcript.cost_usd_micros,
        )
        seconds = transcript.audio_milliseconds / 1000
        await self._record_call(order, TRANSCRIPTION, f"[voice message {audio.filename!r}, {seconds:g} s]", reply)
        self._idea = reply.text
        await self._finish(TRANSCRIPTION, reply, idea=reply.text)
        return transcript.model_used

    async def _ask_agents(self, order: PrototypeOrder) -> list[StepAnswer]:
        """Stage by stage: the agents of a stage are asked at once, then recorded in the stage's order (so the
        rows and the zip read the same however the calls raced); a stage's files are verified together, by
        the stage's first file-holding agent (the code's), before its steps count as done."""
        assert self._caller is not None
        caller = self._caller

        async def ask(step: AgentStep, call: ModelCall) -> ModelReply:
            try:
                return await caller.ask(step_providers(order, step), call, purpose=step.name)
            except _FAILURES:
                self._current = step.name  # the step that failed, as the status and the row report it
                raise

        texts: dict[str, str] = {}
        answers: list[StepAnswer] = []
        for stage in agent_stages(self._parallel):
            calls = [step.call(self._idea, texts) for step in stage]
            replies = await _together([ask(step, call) for step, call in zip(stage, calls, strict=True)])
            for step, call, reply in zip(stage, calls, replies, strict=True):
                await self._record_call(order, step.name, call.prompt, reply)
                texts[step.name] = reply.text
                answers.append(
                    StepAnswer(
                        step=step.name,
                        document=step.document,
                        text=reply.text,
                        model_used=reply.model_used,
                        cost_usd_micros=reply.cost_usd_micros,
                        holds_files=step.holds_files,
                    )
                )
            holding = [step for step in stage if step.holds_files]
            if holding and self._verifies:
                code = "\n\n".join(texts[step.name] for step in holding)  # code and tests: one set of files
                texts[holding[0].name] = await self._verify_and_fix(
                    order, holding[0], {**texts, holding[0].name: code}, answers
                )
            for step, reply in zip(stage, replies, strict=True):
                review = order.review_requirements and step is PIPELINE[0]
                edited = await self._finish(step.name, reply, review=order if review else None)
                if edited is not None:  # the customer's text replaces the answer, for the later steps and the zip
                    texts[step.name] = edited
                    index = next(i for i, answer in enumerate(answers) if answer.step == step.name)
                    answers[index] = answers[index].model_copy(update={"text": edited})
        return answers

    def _zip(self, order: PrototypeOrder) -> tuple[uuid.UUID, dict[str, Any]]:
        return result_file_id(order.prototype_id), {}

    async def _fail(self, order: PrototypeOrder, reason: str) -> None:
        """Keep `current_step` (the step that failed), record why, and tell the customer once."""
        self._status, self._error = PrototypeStatus.FAILED, reason
        await self._record_milestone()
        self._event("failed", step=self._current, cost_usd_micros=self._cost_micros, error=reason)
        await self._email(order, failure_email(order, self._idea, reason), "email why it failed")

    # --- bookkeeping -----------------------------------------------------------------------------------

    def _start_next(self) -> None:
        """Once no step is under way, start every step of the next stage."""
        if self._running:
            return
        stage = next((stage for stage in self._stages if not set(stage) <= set(self._done)), [])
        for step in stage:
            self._running.append(step)
            self._current = self._running[0]
            self._event("step_started", step=step)
        if stage:
            numbers = " and ".join(str(self._steps.index(step) + 1) for step in stage)
            details = f"Step{'s' if len(stage) > 1 else ''} {numbers} of {len(self._steps)}: {', '.join(stage)}"
            workflow.set_current_details(details + (" (at the same time)" if len(stage) > 1 else ""))

    async def _finish(
        self,
        step: str,
        reply: ModelReply,
        idea: str | None = None,
        review: PrototypeOrder | None = None,
    ) -> str | None:
        """Count the step done and start the next; with `review` (the order), only once the customer approves the
        step's answer. Returns the customer's edited text, if any."""
        self._done.append(step)
        self._running.remove(step)
        self._current = self._running[0] if self._running else None
        self._cost_micros += reply.cost_usd_micros
        self._event("step_finished", step=step, **call_fields(reply))
        edited = await self._await_approval(review, step, reply.text) if review is not None else None
        self._start_next()
        await self._record_milestone(idea=idea)
        return edited

    async def _await_approval(self, order: PrototypeOrder, step: str, answer: str) -> str | None:
        """Pause (a durable timer) until the `approve` update answers or `order.approval_window` closes: nothing
        after this step is asked of a model before. The answer awaiting approval is in the status, the event and
        an email. Raises _Cancelled on a refusal or silence."""
        window = order.approval_window
        self._status, self._current = PrototypeStatus.AWAITING_APPROVAL, None
        self._pending = PendingApproval.of(step, answer, answer_by=workflow.now() + window)
        workflow.set_current_details(f"Waiting for the customer to approve the {step}")
        self._event("approval_needed", step=step, approval=self._pending)
        await self._record_milestone()
        asking = None
        if workflow.patched(APPROVAL_EMAIL):  # sent alongside the wait: an answer never waits on the mailer
            asking = asyncio.ensure_future(
                self._email(order, approval_email(order, self._idea, self._pending), f"email the {step} to approve")
            )
        try:
            await workflow.wait_condition(
                lambda: self._approval is not None, timeout=window, timeout_summary="approval window"
            )
        except TimeoutError:
            days = window.total_seconds() / 86400
            raise _Cancelled(f"The {step} were not approved within {days:g} days", timed_out=True) from None
        finally:
            self._pending = None
            await _moot(asking)
        assert self._approval is not None
        if not self._approval.approve:
            raise _Cancelled(f"You declined the {step}")
        self._status = PrototypeStatus.RUNNING
        return self._approval.edited_requirements

    async def _cancel(self, order: PrototypeOrder, reason: str, *, timed_out: bool) -> None:
        """Nothing more is made; the customer hears of it by email only when silence cancelled it."""
        self._status, self._error = PrototypeStatus.CANCELLED, reason
        await self._record_milestone()
        self._event("cancelled", cost_usd_micros=self._cost_micros, error=reason)
        if timed_out:
            await self._email(order, cancelled_email(order, self._idea, reason), "email that it was cancelled")

    async def _record_milestone(self, *, deadline: timedelta | None = None, idea: str | None = None) -> None:
        progress = self.progress()
        await workflow.execute_activity_method(
            RecordActivities.record_prototype_milestone,
            PrototypeMilestone.of(progress, idea=idea, verification=self._verification),
            start_to_close_timeout=DATABASE_CALL,
            schedule_to_close_timeout=deadline,
            retry_policy=RECORD_RETRY,
            summary=f"record {progress.status.lower()} {progress.current_step or ''}".strip(),
        )

    @workflow.update
    async def approve(self, decision: PrototypeApproval) -> PrototypeProgress:
        """The customer's answer to the requirements; returns the status it led to (RUNNING or CANCELLED)."""
        self._approval = decision
        await workflow.wait_condition(lambda: self._status != PrototypeStatus.AWAITING_APPROVAL)
        return self.progress()

    @approve.validator
    def _only_while_awaiting_approval(self, decision: PrototypeApproval) -> None:
        if self._status != PrototypeStatus.AWAITING_APPROVAL or self._approval is not None:
            raise ValueError(f"The prototype is not waiting for approval (it is {self._status})")

    @workflow.query
    def events(self, after: int) -> list[PrototypeEvent]:
        """The event log after the event with id `after` (0: all of it); the last is `completed`, `failed` or
        `cancelled` once the pipeline has ended."""
        return self._events[max(after, 0) :]

    @workflow.query
    def progress(self) -> PrototypeProgress:
        return PrototypeProgress(
            prototype_id=self._prototype_id,
            status=self._status,
            idea=self._idea,
            steps=list(self._steps),
            steps_done=list(self._done),
            current_step=self._current,
            trying=self._caller.trying if self._caller else None,
            progress_percent=100 * len(self._done) // len(self._steps) if self._steps else 0,
            cost_usd_micros=self._cost_micros,
            file_id=self._file_id,
            error=self._error,
            verified=self._verified(),
            fix_rounds=self._fix_rounds,
            preview=self._preview,
            preview_unavailable=self._preview_unavailable,
            approval=self._pending,
        )


class _Cancelled(Exception):
    """The customer declined the requirements, or did not answer in time: the workflow ends CANCELLED."""

    def __init__(self, reason: str, *, timed_out: bool = False) -> None:
        super().__init__(reason)
        self.reason, self.timed_out = reason, timed_out


async def _moot(email: asyncio.Future[None] | None) -> None:
    """An email whose question has been answered: cancelled if not sent yet (a mailer retrying, say)."""
    if email is None:
        return
    if not email.done():
        email.cancel()
    with suppress(asyncio.CancelledError):
        await email


async def _together(calls: Sequence[Awaitable[ModelReply]]) -> list[ModelReply]:
    """Every call at once (each its own activities); the first failure cancels the others, and is raised once they
    have stopped, so nothing of a failed stage goes on behind the failure's bookkeeping."""
    if len(calls) == 1:  # a stage of one: awaited in place, the commands of runs that ask one agent at a time
        return [await calls[0]]
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # not asyncio.wait: a set's order does not replay
        raise
