"""AccountEmailWorkflow: an account's own emails (verification link, "you already have an account", reset code),
one workflow per account, so each is sent once per request and no more often than `interval` per kind.

Requests arrive as the `ask` signal (with signal-with-start, so the first one starts it). One of a kind sent less
than `interval` ago is dropped: an address cannot be flooded through registration, a resend or "forgot password",
and the API answers those the same either way. After `idle` with nothing asked, the workflow ends; a request
after that starts a new run, which by then is past every interval. Its input and history carry the account's id
and the kinds asked for: no address and no token (the activity reads the one and signs the other).
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

from workflows.timeouts import HEARTBEAT

with workflow.unsafe.imports_passed_through():
    from activities.account_email import AccountEmailActivities
    from models.messages.accounts import AccountEmailKind, AccountEmailOrder, AccountEmailOutcome, AccountEmailRequest
    from workflows.mail import EMAIL_DEADLINE, EMAIL_RETRY

_CONTINUE_AFTER_EVENTS = 2_000
"""A long-lived run (asked again and again) continues as new, carrying when each kind was last sent."""


def workflow_id(user_id: uuid.UUID) -> str:
    return f"account-email-{user_id}"


@workflow.defn
class AccountEmailWorkflow:
    def __init__(self) -> None:
        self._asked: list[AccountEmailKind] = []

    @workflow.signal
    def ask(self, kind: AccountEmailKind) -> None:
        self._asked.append(kind)

    @workflow.run
    async def run(self, order: AccountEmailOrder) -> AccountEmailOutcome:
        outcome = AccountEmailOutcome(sent=0, skipped=0)
        last_sent = dict(order.last_sent)
        while True:
            if not self._asked:
                if workflow.info().get_current_history_length() > _CONTINUE_AFTER_EVENTS:
                    workflow.continue_as_new(order.model_copy(update={"last_sent": last_sent}))
                try:
                    await workflow.wait_condition(lambda: bool(self._asked), timeout=order.idle)
                except TimeoutError:
                    return outcome
            kind = self._asked.pop(0)
            now = workflow.now()
            previous = last_sent.get(kind)
            if previous is not None and now - previous < order.interval:
                outcome.skipped += 1
                continue
            last_sent[kind] = now
            request = AccountEmailRequest(
                user_id=order.user_id,
                kind=kind,
                message_id=f"account-{kind.value}-{workflow.uuid4()}",
                link_base_url=order.link_base_url,
            )
            try:
                receipt = await workflow.execute_activity_method(
                    AccountEmailActivities.send_account_email,
                    request,
                    start_to_close_timeout=timedelta(seconds=60),
                    heartbeat_timeout=HEARTBEAT,
                    schedule_to_close_timeout=EMAIL_DEADLINE,
                    retry_policy=EMAIL_RETRY,
                    summary=f"send the {kind.value} email",
                )
            except ActivityError as err:  # the next request may try again; this one is not worth failing for
                workflow.logger.warning("%s email not sent: %s", kind.value, err.cause or err)
                continue
            outcome.sent += receipt is not None
