"""Stand-ins for every activity the workflows call, registered under the real activities' names. A workflow names an
activity by its registered name only, so a worker given these stubs runs the real workflow code with no database,
storage, gateway or model behind it. `Outside` is the scripted world (which providers are down or refuse, whether
storage works, what the gateway answers) and the record of every call, in order, for the tests to assert on. Used by
the workflow tests of each domain (tests/*/test_*_workflow.py, tests/workflows/) and by the history recorder
(tests/replay/record.py); tests/workflows/test_stub_names.py keeps the names in step with the real ones."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.ai.errors import AIFailure
from activities.storage import storage_key
from models.enums import AIProvider, GatewayState, PaymentGateway, PaymentStatus, ServiceTier
from models.messages.accounts import AccountEmailRequest
from models.messages.ai import (
    AICallPolicy,
    AICallRecord,
    ChatInput,
    ModelCall,
    ModelReply,
    Transcript,
    TranscriptionCall,
)
from models.messages.contact import ContactEmail, ContactNotice
from models.messages.email import EmailMessage, EmailReceipt, UserEmail
from models.messages.files import RetainedFile
from models.messages.payments import (
    CheckoutAction,
    CheckoutOrder,
    GatewayObject,
    GatewayReference,
    GatewaySession,
    GatewayStatus,
)
from models.messages.privacy import (
    DeleteHistories,
    ErasedRows,
    ErasureCounts,
    ErasureSubject,
    ExportPackage,
    PackagedExport,
    PurgeKeptPayments,
    StoppedWorkflows,
    StopWorkflows,
)
from models.messages.prototypes import (
    PackagedPrototype,
    PrototypeMilestone,
    PrototypeOrder,
    PrototypePackage,
    RevisionBase,
    RevisionMilestone,
    RevisionOrder,
    SandboxCheck,
    VerificationRequest,
    VerificationResult,
)
from worker import WORKFLOWS

STUB_MODEL = "stub-model"
STUB_COST_MICROS = 1_000
DOWNLOAD_TOKEN = "stub-download-token"
STUB_EMAIL = "someone@example.com"
STUB_FILES = {"main.py": "print('to-do')\n", "test_main.py": "def test_nothing():\n    pass\n"}
"""The files a stubbed revision builds on."""
MEETING_SECONDS = 20.0
"""How long a model call of `Outside.together` waits for the others before it fails as asked alone."""


@dataclass(frozen=True)
class Call:
    name: str
    argument: Any


@dataclass
class Outside:
    """What the stubbed outside world does, and what it was asked (`calls`, in order)."""

    providers_down: set[AIProvider] = field(default_factory=set)
    """Every call fails, retryably (a 503): the workflow's retries run out, then the next provider is asked."""
    providers_refusing: set[AIProvider] = field(default_factory=set)
    """Every call fails non-retryably (a content-policy refusal): the provider's verdict stands."""
    storage_down: bool = False
    mailer_down: bool = False
    """Every send fails, retryably: the email's bounded retries run out."""
    gateway_refuses: bool = False
    """create_at_gateway fails non-retryably (e.g. the gateway rejects the amount)."""
    gateway_status: GatewayState = GatewayState.PENDING
    """What gateway_status answers to a poll."""
    cancel_answer: GatewayState = GatewayState.FAILED
    refund_answer: GatewayState = GatewayState.REFUNDED
    verifications_failing: int = 0
    """The first this many sandbox verdicts fail (a syntax error); the ones after pass."""
    held: dict[str, asyncio.Event] = field(default_factory=dict)
    """Activities (by name) that wait for their event before answering: a test holds a workflow mid-step."""
    together: set[str] = field(default_factory=set)
    """Model calls (by step) that answer only once all of them are in flight at the same time; one still alone
    after MEETING_SECONDS fails, non-retryably: the workflow asked them one after the other."""
    arrived: set[str] = field(default_factory=set)
    steps_refusing: set[str] = field(default_factory=set)
    """Model calls (by step) that every provider refuses (content policy), after meeting the others."""
    answers: dict[str, str] = field(default_factory=dict)
    """What the model answers for a step (by step), in place of "<step> answer from <provider>"."""
    _all_arrived: asyncio.Event = field(default_factory=asyncio.Event)
    calls: list[Call] = field(default_factory=list)

    def called(self, name: str) -> list[Any]:
        """The arguments of every call of one activity, in order."""
        return [call.argument for call in self.calls if call.name == name]

    async def meet(self, step: str) -> None:
        """Wait, within MEETING_SECONDS, until every call of `together` has arrived."""
        self.arrived.add(step)
        if self.arrived >= self.together:
            self._all_arrived.set()
        try:
            await asyncio.wait_for(self._all_arrived.wait(), MEETING_SECONDS)
        except TimeoutError:
            missing = ", ".join(sorted(self.together - self.arrived))
            raise ApplicationError(f"{step} was asked alone: {missing} not in flight", non_retryable=True) from None

    def names(self) -> list[str]:
        return [call.name for call in self.calls]

    def emails(self) -> list[EmailMessage | UserEmail]:
        """Every email sent, whether addressed by the workflow or to an account the activity looks up."""
        return [call.argument for call in self.calls if call.name in ("send_email", "send_user_email")]

    def activities(self) -> list[Callable[..., Any]]:
        return StubActivities(self).all()

    def worker(self, client: Client, task_queue: str, workflows: Sequence[type] = WORKFLOWS) -> Worker:
        """A worker with every workflow the real one registers, and these stubs for its activities."""
        return Worker(client, task_queue=task_queue, workflows=list(workflows), activities=self.activities())


class StubActivities:
    def __init__(self, outside: Outside) -> None:
        self.outside = outside

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.send_email,
            self.send_user_email,
            self.send_account_email,
            self.send_contact_email,
            self.mark_contact_notified,
            self.mark_contact_failed,
            self.mark_file_deleted,
            self.record_prototype_milestone,
            self.read_revision_base,
            self.record_revision_milestone,
            self.delete_object,
            self.package_prototype,
            self.verify_code,
            self.package_export,
            self.read_erasure_subject,
            self.revoke_all_sessions,
            self.stop_user_workflows,
            self.delete_stored_objects,
            self.erase_rows,
            self.purge_outbox,
            self.forget_recipient,
            self.delete_user_histories,
            self.purge_kept_payments,
            self.offline_chat,
            self.ollama_chat,
            self.openai_chat,
            self.azure_chat,
            self.openai_transcribe,
            self.azure_transcribe,
            self.record_ai_call,
            self.create_at_gateway,
            self.gateway_status,
            self.capture_at_gateway,
            self.cancel_at_gateway,
            self.refund_at_gateway,
            self.payment_status,
            self.attach_gateway_object,
            self.complete_payment,
            self.fail_payment,
            self.refund_payment,
        ]

    async def _note(self, argument: Any) -> None:
        name = activity.info().activity_type
        self.outside.calls.append(Call(name, argument))
        if (gate := self.outside.held.get(name)) is not None:
            await gate.wait()

    # --- email, records, storage -------------------------------------------------------------------------

    @activity.defn(name="send_user_email")
    async def send_user_email(self, email: UserEmail) -> EmailReceipt:
        await self._note(email)
        if self.outside.mailer_down:
            raise ApplicationError("the mailer is unreachable", type="EmailServiceUnreachable")
        return EmailReceipt(
            message_id=email.message_id, backend="stub", provider_message_id=None, sent_at=datetime.now(UTC)
        )

    @activity.defn(name="send_account_email")
    async def send_account_email(self, request: AccountEmailRequest) -> EmailReceipt | None:
        await self._note(request)
        if self.outside.mailer_down:
            raise ApplicationError("the mailer is unreachable", type="EmailServiceUnreachable")
        return EmailReceipt(
            message_id=request.message_id, backend="stub", provider_message_id=None, sent_at=datetime.now(UTC)
        )

    @activity.defn(name="send_contact_email")
    async def send_contact_email(self, email: ContactEmail) -> EmailReceipt:
        await self._note(email)
        if self.outside.mailer_down:
            raise ApplicationError("the mailer is unreachable", type="EmailServiceUnreachable")
        message_id = f"contact-{email.contact_id}-{email.kind}"
        return EmailReceipt(message_id=message_id, backend="stub", provider_message_id=None, sent_at=datetime.now(UTC))

    @activity.defn(name="send_email")
    async def send_email(self, message: EmailMessage) -> EmailReceipt:
        await self._note(message)
        if self.outside.mailer_down:
            raise ApplicationError("the mailer is unreachable", type="EmailServiceUnreachable")
        return EmailReceipt(
            message_id=message.message_id, backend="stub", provider_message_id=None, sent_at=datetime.now(UTC)
        )

    @activity.defn(name="mark_contact_notified")
    async def mark_contact_notified(self, contact_id: uuid.UUID) -> None:
        await self._note(contact_id)

    @activity.defn(name="mark_contact_failed")
    async def mark_contact_failed(self, contact_id: uuid.UUID) -> None:
        await self._note(contact_id)

    @activity.defn(name="mark_file_deleted")
    async def mark_file_deleted(self, file_id: uuid.UUID) -> None:
        await self._note(file_id)

    @activity.defn(name="record_prototype_milestone")
    async def record_prototype_milestone(self, milestone: PrototypeMilestone) -> None:
        await self._note(milestone)

    @activity.defn(name="read_revision_base")
    async def read_revision_base(self, order: RevisionOrder) -> RevisionBase:
        await self._note(order)
        return RevisionBase(idea=order.idea, plan="# Plan", files=STUB_FILES, revision=order.number - 1)

    @activity.defn(name="record_revision_milestone")
    async def record_revision_milestone(self, milestone: RevisionMilestone) -> None:
        await self._note(milestone)

    @activity.defn(name="delete_object")
    async def delete_object(self, key: str) -> None:
        await self._note(key)

    @activity.defn(name="package_prototype")
    async def package_prototype(self, package: PrototypePackage) -> PackagedPrototype:
        await self._note(package)
        if self.outside.storage_down:
            raise ApplicationError("storage unreachable: connection refused", type="StorageUnreachable")
        return PackagedPrototype(
            file_id=package.file_id,
            size=1,
            sha256="0" * 64,
            download_token=DOWNLOAD_TOKEN,
            names=[answer.document for answer in package.answers],
        )

    @activity.defn(name="verify_code")
    async def verify_code(self, request: VerificationRequest) -> VerificationResult:
        await self._note(request)
        failing = len(self.outside.called("verify_code")) <= self.outside.verifications_failing
        check = SandboxCheck(
            name="compile main.py", passed=not failing, output="SyntaxError: invalid syntax" if failing else ""
        )
        return VerificationResult(
            round=request.round, passed=not failing, files=["main.py"], checks=[check], network_isolated=True
        )

    # --- export and erasure ------------------------------------------------------------------------------

    @activity.defn(name="package_export")
    async def package_export(self, package: ExportPackage) -> PackagedExport:
        await self._note(package)
        return PackagedExport(
            file_id=package.file_id,
            size=1,
            sha256="0" * 64,
            names=["account.json"],
            download_token=DOWNLOAD_TOKEN,
            email=STUB_EMAIL,
        )

    @activity.defn(name="read_erasure_subject")
    async def read_erasure_subject(self, user_id: uuid.UUID) -> ErasureSubject:
        await self._note(user_id)
        return ErasureSubject(user_id=user_id, email=STUB_EMAIL)

    @activity.defn(name="revoke_all_sessions")
    async def revoke_all_sessions(self, user_id: uuid.UUID) -> int:
        await self._note(user_id)
        return 1

    @activity.defn(name="stop_user_workflows")
    async def stop_user_workflows(self, stop: StopWorkflows) -> StoppedWorkflows:
        await self._note(stop)
        return StoppedWorkflows(cancelled=["prototype-stub"], terminated=[], files_deleted_early=["file-stub"])

    @activity.defn(name="delete_stored_objects")
    async def delete_stored_objects(self, user_id: uuid.UUID) -> int:
        await self._note(user_id)
        return 1

    @activity.defn(name="erase_rows")
    async def erase_rows(self, rows: ErasedRows) -> ErasureCounts:
        await self._note(rows)
        keep_until = (datetime.now(UTC) + timedelta(days=365 * rows.keep_payments_years)).date()
        return ErasureCounts(deleted={"users": 1}, payments_anonymised=1, keep_until=keep_until)

    @activity.defn(name="purge_kept_payments")
    async def purge_kept_payments(self, purge: PurgeKeptPayments) -> int:
        await self._note(purge)
        return 1

    @activity.defn(name="purge_outbox")
    async def purge_outbox(self, address: str) -> int:
        await self._note(address)
        return 0

    @activity.defn(name="forget_recipient")
    async def forget_recipient(self, message_id: str) -> None:
        await self._note(message_id)

    @activity.defn(name="delete_user_histories")
    async def delete_user_histories(self, histories: DeleteHistories) -> int:
        await self._note(histories)
        return len(histories.known)

    # --- AI providers ------------------------------------------------------------------------------------

    async def _answer(self, tier: AIProvider, argument: ModelCall | TranscriptionCall) -> None:
        await self._note(argument)
        if tier in self.outside.providers_refusing:
            raise ApplicationError(
                f"{tier.lower()} refused: content policy", type=AIFailure.CONTENT_REFUSED, non_retryable=True
            )
        if tier in self.outside.providers_down:
            raise ApplicationError(f"{tier.lower()} answered 503", type=AIFailure.PROVIDER_ERROR)

    async def _reply(self, tier: AIProvider, call: ModelCall) -> ModelReply:
        await self._answer(tier, call)
        if call.step in self.outside.together:
            await self.outside.meet(call.step)
        if call.step in self.outside.steps_refusing:
            raise ApplicationError(
                f"{call.step} refused: content policy", type=AIFailure.CONTENT_REFUSED, non_retryable=True
            )
        return ModelReply(
            tier=tier,
            text=self.outside.answers.get(call.step or "", f"{call.step or 'chat'} answer from {tier.lower()}"),
            model_used=STUB_MODEL,
            input_tokens=10,
            output_tokens=20,
            latency_ms=5,
            cost_usd_micros=STUB_COST_MICROS,
        )

    async def _transcript(self, tier: AIProvider, call: TranscriptionCall) -> Transcript:
        await self._answer(tier, call)
        return Transcript(
            tier=tier,
            text="A to-do list app with reminders",
            model_used=STUB_MODEL,
            audio_milliseconds=3000,
            latency_ms=5,
            cost_usd_micros=STUB_COST_MICROS,
        )

    @activity.defn(name="offline_chat")
    async def offline_chat(self, call: ModelCall) -> ModelReply:
        return await self._reply(AIProvider.OFFLINE, call)

    @activity.defn(name="ollama_chat")
    async def ollama_chat(self, call: ModelCall) -> ModelReply:
        return await self._reply(AIProvider.OLLAMA, call)

    @activity.defn(name="openai_chat")
    async def openai_chat(self, call: ModelCall) -> ModelReply:
        return await self._reply(AIProvider.OPENAI, call)

    @activity.defn(name="azure_chat")
    async def azure_chat(self, call: ModelCall) -> ModelReply:
        return await self._reply(AIProvider.AZURE, call)

    @activity.defn(name="openai_transcribe")
    async def openai_transcribe(self, call: TranscriptionCall) -> Transcript:
        return await self._transcript(AIProvider.OPENAI, call)

    @activity.defn(name="azure_transcribe")
    async def azure_transcribe(self, call: TranscriptionCall) -> Transcript:
        return await self._transcript(AIProvider.AZURE, call)

    @activity.defn(name="record_ai_call")
    async def record_ai_call(self, record: AICallRecord) -> uuid.UUID:
        await self._note(record)
        return uuid.uuid5(uuid.NAMESPACE_URL, record.call_key)

    # --- payment gateways and records --------------------------------------------------------------------

    @activity.defn(name="create_at_gateway")
    async def create_at_gateway(self, order: CheckoutOrder) -> GatewaySession:
        await self._note(order)
        if self.outside.gateway_refuses:
            raise ApplicationError("the gateway rejected the amount", type="GatewayError", non_retryable=True)
        return GatewaySession(
            gateway_id=f"stub_{order.payment_id.hex[:12]}",
            action=CheckoutAction(kind="redirect", redirect_url=f"https://gateway.invalid/pay/{order.payment_id}"),
        )

    async def _status(self, payment: GatewayReference, state: GatewayState) -> GatewayStatus:
        await self._note(payment)
        return GatewayStatus(state=state, detail=f"stub {state.lower()}")

    @activity.defn(name="gateway_status")
    async def gateway_status(self, payment: GatewayReference) -> GatewayStatus:
        return await self._status(payment, self.outside.gateway_status)

    @activity.defn(name="capture_at_gateway")
    async def capture_at_gateway(self, payment: GatewayReference) -> GatewayStatus:
        return await self._status(payment, GatewayState.PAID)

    @activity.defn(name="cancel_at_gateway")
    async def cancel_at_gateway(self, payment: GatewayReference) -> GatewayStatus:
        return await self._status(payment, self.outside.cancel_answer)

    @activity.defn(name="refund_at_gateway")
    async def refund_at_gateway(self, payment: GatewayReference) -> GatewayStatus:
        return await self._status(payment, self.outside.refund_answer)

    @activity.defn(name="payment_status")
    async def payment_status(self, payment_id: uuid.UUID) -> PaymentStatus:
        await self._note(payment_id)
        return PaymentStatus.PENDING

    @activity.defn(name="attach_gateway_object")
    async def attach_gateway_object(self, attached: GatewayObject) -> None:
        await self._note(attached)

    @activity.defn(name="complete_payment")
    async def complete_payment(self, payment_id: uuid.UUID) -> None:
        await self._note(payment_id)

    @activity.defn(name="fail_payment")
    async def fail_payment(self, payment_id: uuid.UUID) -> None:
        await self._note(payment_id)

    @activity.defn(name="refund_payment")
    async def refund_payment(self, payment_id: uuid.UUID) -> None:
        await self._note(payment_id)


# --- inputs: one valid input per workflow, as the services build them ----------------------------------------

FAST_AI = AICallPolicy(
    timeout_seconds=30, retry_initial_interval_seconds=1, retry_maximum_interval_seconds=2, retry_maximum_attempts=3
)


def contact_notice() -> ContactNotice:
    """As the service builds it: the stored message's id, nothing of what the sender typed."""
    return ContactNotice(contact_id=uuid.uuid4(), team_address="team@statex.invalid")


def retained_file(expires_at: datetime) -> RetainedFile:
    file_id = uuid.uuid4()
    return RetainedFile(file_id=file_id, user_id=uuid.uuid4(), storage_key=storage_key(file_id), expires_at=expires_at)


def chat_input(providers: Sequence[AIProvider] = (AIProvider.OPENAI,)) -> ChatInput:
    return ChatInput(
        chat_id=uuid.uuid4(),
        user_id=uuid.uuid4(),
        providers=list(providers),
        call=ModelCall(prompt="What stack fits a to-do app?"),
        policy=FAST_AI,
    )


def prototype_order(
    providers: Sequence[AIProvider] = (AIProvider.OPENAI, AIProvider.OFFLINE), *, voice: bool = False
) -> PrototypeOrder:
    prototype_id = uuid.uuid4()
    audio = TranscriptionCall(audio_key=f"audio/{prototype_id}", filename="idea.ogg", content_type="audio/ogg")
    return PrototypeOrder(
        prototype_id=prototype_id,
        user_id=uuid.uuid4(),
        idea="" if voice else "A to-do list app with reminders",
        audio=audio if voice else None,
        providers=list(providers),
        transcribers=[AIProvider.OPENAI] if voice else [],
        policy=FAST_AI,
        file_lifetime=timedelta(hours=24),
        link_base_url="https://api.statex.invalid",
    )


def revision_order(number: int = 1) -> RevisionOrder:
    return RevisionOrder(
        **prototype_order(providers=[AIProvider.OPENAI]).model_dump(),
        revision_id=uuid.uuid4(),
        number=number,
        feedback="Add a due date to every item",
    )


def checkout_order(
    *,
    expires_after: timedelta = timedelta(hours=1),
    poll_every: timedelta = timedelta(minutes=10),
    refund_window: timedelta = timedelta(days=14),
    watch_refunds_for: timedelta = timedelta(days=30),
) -> CheckoutOrder:
    return CheckoutOrder(
        payment_id=uuid.uuid4(),
        user_id=uuid.uuid4(),
        tier=ServiceTier.PREMIUM,
        tier_name="Premium",
        gateway=PaymentGateway.STRIPE,
        amount_minor=4900,
        currency="EUR",
        amount_display="49.00 EUR",
        return_url="https://statex.invalid/paid",
        cancel_url="https://statex.invalid/cancelled",
        expires_after=expires_after,
        poll_every=poll_every,
        refund_window=refund_window,
        watch_refunds_for=watch_refunds_for,
    )


@dataclass(frozen=True)
class Stubbed:
    """A running worker with every real workflow and the stub activities, on a task queue of its own."""

    env: WorkflowEnvironment
    outside: Outside
    task_queue: str

    @property
    def client(self) -> Client:
        return self.env.client
