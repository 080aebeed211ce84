"""The stubs stand in for the real activities only if they carry exactly the real names."""

from __future__ import annotations

from temporalio import activity
from workflow_stubs import Outside

from activities.account_email import AccountEmailActivities
from activities.ai.azure import AzureActivities
from activities.ai.offline import OfflineActivities
from activities.ai.ollama import OllamaActivities
from activities.ai.openai import OpenAIActivities
from activities.ai.records import AIRecordActivities
from activities.contact import ContactActivities
from activities.email import EmailActivities
from activities.erasure import ErasureActivities
from activities.export import ExportActivities
from activities.packaging import PackagingActivities
from activities.payment_records import PaymentRecords
from activities.payments import GatewayActivities
from activities.records import RecordActivities
from activities.revisions import RevisionActivities
from activities.sandbox import SandboxActivities
from activities.storage import StorageActivities

REAL = (
    AccountEmailActivities,
    EmailActivities,
    ContactActivities,
    RecordActivities,
    RevisionActivities,
    StorageActivities,
    PackagingActivities,
    SandboxActivities,
    OfflineActivities,
    OllamaActivities,
    OpenAIActivities,
    AzureActivities,
    AIRecordActivities,
    GatewayActivities,
    PaymentRecords,
    ExportActivities,
    ErasureActivities,
)


def registered_name(function: object) -> str | None:
    # The SDK keeps no public accessor for a callable's activity name; its definition is what the worker reads.
    definition = activity._Definition.from_callable(function)  # type: ignore[arg-type]
    return definition.name if definition is not None else None


def test_every_real_activity_has_a_stub_of_the_same_name_and_no_more() -> None:
    real = {name for cls in REAL for member in vars(cls).values() if (name := registered_name(member))}
    stubs = {registered_name(stub) for stub in Outside().activities()}
    assert stubs == real
