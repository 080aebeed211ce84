"""The request id travels with the workflows a request starts, so their lines and their activities' lines
carry it: the client puts it in a Temporal header, the worker reads it back into logs.request_id.

Workflow side: the interceptor only reads headers and sets context variables (no I/O, no commands, the same
on every replay), so it is deterministic. Its context variables are this module's, outside the sandbox (the
worker hands the sandbox these classes, it does not re-import them), which is where the log formatter reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

import temporalio.converter
from temporalio import activity, workflow
from temporalio.api.common.v1 import Payload
from temporalio.client import (
    Interceptor as ClientInterceptor,
)
from temporalio.client import (
    OutboundInterceptor as ClientOutbound,
)
from temporalio.client import (
    SignalWorkflowInput,
    StartWorkflowInput,
    StartWorkflowUpdateInput,
    StartWorkflowUpdateWithStartInput,
    WorkflowHandle,
    WorkflowUpdateHandle,
)
from temporalio.worker import (
    ActivityInboundInterceptor,
    ContinueAsNewInput,
    ExecuteActivityInput,
    ExecuteWorkflowInput,
    HandleSignalInput,
    HandleUpdateInput,
    Interceptor,
    StartActivityInput,
    StartChildWorkflowInput,
    StartLocalActivityInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

import logs

HEADER = "statex-request-id"

# Headers are not run through the application's data converter (nor its codec): a plain JSON string.
_converter = temporalio.converter.default().payload_converter


def with_request_id(headers: Mapping[str, Payload]) -> Mapping[str, Payload]:
    """`headers` plus the current request id, if there is one (a workflow started outside a request has none)."""
    current = logs.request_id.get()
    if current is None or HEADER in headers:
        return headers
    return {**headers, HEADER: _converter.to_payload(current)}


def request_id_in(headers: Mapping[str, Payload]) -> str | None:
    payload = headers.get(HEADER)
    if payload is None:
        return None
    value = _converter.from_payload(payload, str)
    return value if isinstance(value, str) else None


# --- client: the API (and anything else that starts workflows) -----------------------------------------


class _ClientOutbound(ClientOutbound):
    async def start_workflow(self, input: StartWorkflowInput) -> WorkflowHandle[Any, Any]:
        input.headers = with_request_id(input.headers)
        return await super().start_workflow(input)

    async def start_update_with_start_workflow(
        self, input: StartWorkflowUpdateWithStartInput
    ) -> WorkflowUpdateHandle[Any]:
        input.start_workflow_input.headers = with_request_id(input.start_workflow_input.headers)
        input.update_workflow_input.headers = with_request_id(input.update_workflow_input.headers)
        return await super().start_update_with_start_workflow(input)

    async def start_workflow_update(self, input: StartWorkflowUpdateInput) -> WorkflowUpdateHandle[Any]:
        input.headers = with_request_id(input.headers)
        return await super().start_workflow_update(input)

    async def signal_workflow(self, input: SignalWorkflowInput) -> None:
        input.headers = with_request_id(input.headers)
        await super().signal_workflow(input)


class RequestIdToWorkflows(ClientInterceptor):
    """On the API's client: every start, update and signal carries the request id of the request sending it."""

    def intercept_client(self, next: ClientOutbound) -> ClientOutbound:
        return _ClientOutbound(next)


# --- worker: workflows and activities ----------------------------------------------------------------


class _WorkflowOutbound(WorkflowOutboundInterceptor):
    """The workflow's activities and children inherit the request id the workflow runs under."""

    def start_activity(self, input: StartActivityInput) -> workflow.ActivityHandle[Any]:
        input.headers = with_request_id(input.headers)
        return super().start_activity(input)

    def start_local_activity(self, input: StartLocalActivityInput) -> workflow.ActivityHandle[Any]:
        input.headers = with_request_id(input.headers)
        return super().start_local_activity(input)

    async def start_child_workflow(self, input: StartChildWorkflowInput) -> workflow.ChildWorkflowHandle[Any, Any]:
        input.headers = with_request_id(input.headers)
        return await super().start_child_workflow(input)

    def continue_as_new(self, input: ContinueAsNewInput) -> NoReturn:
        input.headers = with_request_id(input.headers)
        super().continue_as_new(input)


class _WorkflowInbound(WorkflowInboundInterceptor):
    """Each handler runs in a task of its own, so each sets the ids it logs under: the run takes the starting
    request's id; a signal or an update the id of the request that sent it."""

    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        super().init(_WorkflowOutbound(outbound))

    @staticmethod
    def _enter(headers: Mapping[str, Payload]) -> None:
        logs.workflow_id.set(workflow.info().workflow_id)
        logs.request_id.set(request_id_in(headers))

    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        self._enter(input.headers)
        return await super().execute_workflow(input)

    async def handle_signal(self, input: HandleSignalInput) -> None:
        self._enter(input.headers)
        await super().handle_signal(input)

    async def handle_update_handler(self, input: HandleUpdateInput) -> Any:
        self._enter(input.headers)
        return await super().handle_update_handler(input)


class _ActivityInbound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        """Each activity runs in a task of its own: the ids set here are its alone."""
        logs.workflow_id.set(activity.info().workflow_id)
        logs.request_id.set(request_id_in(input.headers))
        return await super().execute_activity(input)


class RequestIdFromHeaders(Interceptor):
    """On the worker: workflow and activity lines carry the request id and the workflow id."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ActivityInbound(next)

    def workflow_interceptor_class(self, input: WorkflowInterceptorClassInput) -> type[WorkflowInboundInterceptor]:
        return _WorkflowInbound
