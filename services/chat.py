"""Chat: one question to a model through ChatWorkflow, answered directly if it is quick, else by its status.

No database connection is held while the model is asked: the answer is awaited on Temporal alone, and the
status reads the stored row in its own short unit of work before asking Temporal about a running chat.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from sqlmodel import select
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.service import RPCError, RPCStatusCode

from models import search_attributes
from models.api.chat import ChatAccepted, ChatRequest, ChatResponse, ChatStatus
from models.api.common import AIProviderName
from models.enums import AIProvider
from models.messages.ai import ChatInput, ModelCall, ModelReply
from models.tables import AIResponse
from services.accounts import Account
from services.ai import call_policy, failure_error, failure_message, providers_for
from services.errors import NotFound
from services.idempotency import claim
from services.runtime import Service
from services.temporal import reaching_temporal, rpc_timeout, start_workflow
from services.waiting import wait_for_caller
from workflows.chat import START_POLICY, ChatWorkflow, call_key, workflow_id

_MICROS_PER_USD = 1_000_000


def status_url(chat_id: uuid.UUID) -> str:
    """Outside /api/ai/ on purpose: the limiter counts /api/ai/* at 2 a day, and polling must not use that up."""
    return f"/api/chats/{chat_id}"


class ChatService(Service):
    def providers(self, account: Account, model: AIProviderName | None) -> list[AIProvider]:
        """The account's provider chain for a chat (403 for a provider its tier may not use, 503 for none).
        Separate from `ask` so a route can refuse before the request is counted against the AI limit."""
        return providers_for(self.settings, account, model)

    async def ask(
        self,
        account: Account,
        body: ChatRequest,
        providers: list[AIProvider],
        *,
        idempotency_key: str | None,
        gone: asyncio.Event | None = None,
    ) -> ChatResponse | ChatAccepted:
        """The answer if it comes within AI_CHAT_WAIT_SECONDS, else where to poll for it. With an
        Idempotency-Key, a retry joins the first request's workflow and gets its answer; the same key with a
        different question is a 422. Once `gone` is set the wait stops (CallerGone); the chat runs on, and its
        answer is kept for the status URL."""
        chat_id = await claim(
            self.database, "chat", f"user:{account.id}", idempotency_key, body.model_dump(mode="json")
        )
        question = ChatInput(
            chat_id=chat_id,
            user_id=account.id,
            providers=providers,
            call=ModelCall(prompt=body.message, temperature=body.temperature, max_tokens=body.max_tokens),
            policy=call_policy(self.settings),
        )
        handle = await start_workflow(
            self.temporal,
            self.settings,
            ChatWorkflow.run,
            question,
            id=workflow_id(chat_id),
            policy=START_POLICY,
            search_attributes=search_attributes.for_resource(chat_id, account.id),
            summary=f"Chat via {', '.join(tier.value.lower() for tier in providers)}",
        )
        wait = self.settings.ai_chat_wait_seconds
        try:
            with reaching_temporal():
                outcome = await wait_for_caller(
                    handle.result(rpc_timeout=timedelta(seconds=wait) + rpc_timeout(self.settings)),
                    wait,
                    gone,
                    what="chat",
                )
        except TimeoutError:
            return ChatAccepted(chat_id=chat_id, status_url=status_url(chat_id))
        except WorkflowFailureError as err:
            raise failure_error(err) from err
        return chat_response(chat_id, outcome.reply)

    async def status(self, account: Account, chat_id: uuid.UUID) -> ChatStatus:
        """The stored answer if there is one; else the workflow's state. Someone else's chat is not found."""
        async with self.database.session() as db:
            row = (await db.exec(select(AIResponse).where(AIResponse.call_key == call_key(chat_id)))).first()
        if row is not None:
            if row.user_id != account.id:
                raise NotFound("Chat")
            return ChatStatus(chat_id=chat_id, status="completed", result=chat_response(chat_id, _reply(row)))
        handle = self.temporal.get_workflow_handle_for(ChatWorkflow.run, workflow_id(chat_id))
        try:
            with reaching_temporal():
                try:
                    description = await handle.describe(rpc_timeout=rpc_timeout(self.settings))
                except RPCError as err:
                    if err.status == RPCStatusCode.NOT_FOUND:
                        raise NotFound("Chat") from err
                    raise
                if description.typed_search_attributes.get(search_attributes.USER_ID) != str(account.id):
                    raise NotFound("Chat")
                if description.status == WorkflowExecutionStatus.RUNNING:
                    return ChatStatus(chat_id=chat_id, status="running")
                outcome = await handle.result(rpc_timeout=rpc_timeout(self.settings))
        except WorkflowFailureError as err:
            return ChatStatus(chat_id=chat_id, status="failed", error=failure_message(err))
        return ChatStatus(chat_id=chat_id, status="completed", result=chat_response(chat_id, outcome.reply))


def chat_response(chat_id: uuid.UUID, reply: ModelReply) -> ChatResponse:
    return ChatResponse(
        chat_id=chat_id,
        response=reply.text,
        model_used=reply.model_used,
        template=reply.tier == AIProvider.OFFLINE,
        tokens_used=reply.input_tokens + reply.output_tokens,
        processing_time_ms=reply.latency_ms,
        cost_usd=reply.cost_usd_micros / _MICROS_PER_USD,
        cost_usd_micros=reply.cost_usd_micros,
    )


def _reply(row: AIResponse) -> ModelReply:
    return ModelReply(
        tier=row.tier,
        text=row.response,
        model_used=row.model_used,
        input_tokens=row.input_tokens,
        output_tokens=row.output_tokens,
        latency_ms=row.processing_time_ms,
        cost_usd_micros=row.cost_usd_micros,
    )
