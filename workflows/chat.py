"""ChatWorkflow: one question to a model (walking the provider chain), recorded as one AIResponse row."""

from __future__ import annotations

import uuid
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from workflows.timeouts import DATABASE_CALL

with workflow.unsafe.imports_passed_through():
    from activities.ai.records import AIRecordActivities
    from models.messages.ai import AICallRecord, ChatInput, ChatOutcome, ChatProgress
    from workflows.ai import ModelCaller
    from workflows.starting import ONCE_PER_RESOURCE

RECORD_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))


def workflow_id(chat_id: uuid.UUID) -> str:
    return f"chat-{chat_id}"


START_POLICY = ONCE_PER_RESOURCE
"""The id comes from the chat id (an Idempotency-Key's, or fresh): a second start is a retried request, and gets
the first run's answer, whether it is still running or finished (USE_EXISTING, REJECT_DUPLICATE)."""


def call_key(chat_id: uuid.UUID) -> str:
    """The AIResponse row's idempotency key, and how the status endpoint finds the row."""
    return f"chat-{chat_id}"


@workflow.defn
class ChatWorkflow:
    def __init__(self) -> None:
        self._chat_id: uuid.UUID | None = None
        self._caller: ModelCaller | None = None
        self._answered = False

    @workflow.run
    async def run(self, chat: ChatInput) -> ChatOutcome:
        self._chat_id = chat.chat_id
        self._caller = ModelCaller(chat.policy)
        reply = await self._caller.ask(chat.providers, chat.call, purpose="chat")
        await workflow.execute_activity_method(
            AIRecordActivities.record_ai_call,
            AICallRecord(call_key=call_key(chat.chat_id), user_id=chat.user_id, prompt=chat.call.prompt, reply=reply),
            start_to_close_timeout=DATABASE_CALL,
            retry_policy=RECORD_RETRY,
            summary="record the call",
        )
        self._answered = True
        return ChatOutcome(chat_id=chat.chat_id, reply=reply, providers_tried=list(self._caller.tried))

    @workflow.query
    def progress(self) -> ChatProgress:
        return ChatProgress(
            chat_id=self._chat_id,
            trying=self._caller.trying if self._caller else None,
            providers_tried=list(self._caller.tried) if self._caller else [],
            answered=self._answered,
        )
