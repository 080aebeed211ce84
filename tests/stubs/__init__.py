"""Stand-ins for every activity the workflows call, registered under the real activities' names. A workflow names an
activity by its registered name only, so a worker given these stubs runs the real workflow code with no database,
storage, gateway or model behind it. `Outside` is the scripted world (which providers are down or refuse, whether
storage works, what the gateway answers) and the record of every call, in order, for the tests to assert on.

One module per domain, as the code is laid out, each with its stub activities (a `Stubs` class) and one valid input
per workflow of the domain, as the services build it: email.py, contact.py, files.py (and the retention workflow),
prototypes.py (and revisions, packaging, the sandbox), ai.py (providers, AI call records, chat), accounts.py (export
and erasure), payments.py (gateways, payment records, checkout). `StubActivities` assembles them all.

Used by the workflow tests of each domain (tests/*/test_*_workflow.py, tests/workflows/) and by the history recorder
(tests/replay/record.py); tests/workflows/test_stub_names.py keeps the names in step with the real ones. The package
is named `stubs` because no module of the application or its dependencies is: tests/ comes first on the path, so
a shared name would shadow the real one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.liveness import HeartbeatWhileRunning
from models.enums import AIProvider, GatewayState
from models.messages.email import EmailMessage, UserEmail
from models.messages.prototypes import PreviewImage
from stubs.accounts import AccountStubs
from stubs.ai import AIStubs
from stubs.base import Call, Stubs
from stubs.contact import ContactStubs
from stubs.email import EmailStubs
from stubs.files import FileStubs
from stubs.payments import PaymentStubs
from stubs.prototypes import PrototypeStubs
from worker import WORKFLOWS

__all__ = ["DOMAINS", "MEETING_SECONDS", "Call", "Outside", "StubActivities", "Stubbed", "Stubs"]

DOMAINS: tuple[type[Stubs], ...] = (
    EmailStubs,
    ContactStubs,
    FileStubs,
    PrototypeStubs,
    AccountStubs,
    AIStubs,
    PaymentStubs,
)
"""Every domain's stubs, which `StubActivities` gives the worker together."""

MEETING_SECONDS = 20.0
"""How long a model call of `Outside.together` waits for the others before it fails as asked alone."""


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
    preview: PreviewImage | None = None
    """The picture a passing sandbox verdict carries; None: no browser (the verdict says so)."""
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
        """A worker with every workflow the real one registers, and these stubs for its activities, which
        heartbeat while they run as the real worker's do (a stub held back past HEARTBEAT stays alive)."""
        return Worker(
            client,
            task_queue=task_queue,
            workflows=list(workflows),
            activities=self.activities(),
            interceptors=[HeartbeatWhileRunning()],
        )


class StubActivities:
    """Every domain's stubs, answering as one `outside` says and noting their calls in its one record."""

    def __init__(self, outside: Outside) -> None:
        self.outside = outside
        self.domains = [domain(outside) for domain in DOMAINS]

    def all(self) -> list[Callable[..., Any]]:
        return [stub for domain in self.domains for stub in domain.all()]


@dataclass(frozen=True)
class Stubbed:
    """A running worker with every real workflow and the stub activities, on a task queue of its own."""

    env: WorkflowEnvironment
    outside: Outside
    task_queue: str

    @property
    def client(self) -> Client:
        return self.env.client
