"""ErasureWorkflow's end with stubbed activities: the anonymised payments it kept get a timer of their own, a child
that outlives the erasure and names nobody. (The timer itself: tests/accounts/test_privacy.py, against the database.)"""

from __future__ import annotations

import uuid
from datetime import timedelta

from helpers import eventually
from stubs import Stubbed

from models.messages.privacy import ErasureOrder, KeptPayments
from workflows.erasure import ErasureWorkflow, KeptPaymentsWorkflow, erasure_id, kept_payments_workflow_id
from workflows.erasure import workflow_id as erasure_workflow_id


async def test_an_erasure_that_kept_payments_ends_by_starting_their_deletion_timer_and_does_not_wait_for_it(
    stubbed: Stubbed,
) -> None:
    order = ErasureOrder(user_id=uuid.uuid4(), keep_payments_years=10, cancel_grace=timedelta(seconds=5))
    erasure = await stubbed.client.start_workflow(
        ErasureWorkflow.run, order, id=erasure_workflow_id(order.user_id), task_queue=stubbed.task_queue
    )

    async def finished() -> bool | None:  # polled, not awaited: awaiting a result would let the clock skip
        return (await erasure.query(ErasureWorkflow.progress)).finished or None

    await eventually(finished, what="the erasure")
    timer = stubbed.client.get_workflow_handle_for(
        KeptPaymentsWorkflow.run, kept_payments_workflow_id(erasure_id(order.user_id))
    )
    described = await timer.describe()
    assert described.status is not None and described.status.name == "RUNNING"
    [started] = (await timer.fetch_history()).events[:1]
    [kept] = await stubbed.client.data_converter.decode(
        started.workflow_execution_started_event_attributes.input.payloads, [KeptPayments]
    )
    [rows] = stubbed.outside.called("erase_rows")
    assert rows.user_id == order.user_id
    assert kept.erasure_id == erasure_id(order.user_id) != order.user_id  # an opaque id and a date: nobody named
    assert kept.keep_until.year - described.start_time.year == 10
    assert stubbed.outside.called("purge_kept_payments") == []
