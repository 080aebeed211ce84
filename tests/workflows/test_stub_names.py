"""The stubs stand in for the real activities only if they carry exactly the real names: every domain's module of
tests/stubs, each stub it declares given to the worker, and all of them together the real activities, each once."""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

import pytest
import stubs
from stubs import DOMAINS, Outside, Stubs
from temporalio import activity

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


def declared(cls: type) -> set[str]:
    return {name for member in vars(cls).values() if (name := registered_name(member))}


REAL_NAMES = set().union(*(declared(cls) for cls in REAL))
DOMAIN_MODULES = [
    importlib.import_module(f"{stubs.__name__}.{module.name}")
    for module in pkgutil.iter_modules(stubs.__path__)
    if module.name != "base"
]


def test_every_real_activity_has_a_stub_of_the_same_name_and_no_more() -> None:
    names = [registered_name(stub) for stub in Outside().activities()]
    assert set(names) == REAL_NAMES
    assert len(names) == len(set(names)), "a name is stubbed twice"


@pytest.mark.parametrize("module", DOMAIN_MODULES, ids=lambda module: module.__name__)
def test_each_domain_module_stubs_real_activities_and_the_worker_gets_them_all(module: ModuleType) -> None:
    classes = [
        cls
        for cls in vars(module).values()
        if isinstance(cls, type) and issubclass(cls, Stubs) and cls.__module__ == module.__name__
    ]
    assert classes, f"{module.__name__} has no Stubs class"
    for cls in classes:
        assert cls in DOMAINS, f"{cls.__name__} is not in stubs.DOMAINS: the worker would not get its stubs"
        listed = [registered_name(stub) for stub in cls(Outside()).all()]
        assert set(listed) == declared(cls), f"{cls.__name__}.all() lists other stubs than it declares"
        assert declared(cls) <= REAL_NAMES, f"{cls.__name__} stubs no real activity by these names"


def test_no_activity_is_stubbed_by_two_domains() -> None:
    seen: dict[str, str] = {}
    for cls in DOMAINS:
        for name in declared(cls):
            assert name not in seen, f"{name} is stubbed by {seen[name]} and {cls.__name__}"
            seen[name] = cls.__name__
