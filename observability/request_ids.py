"""The request id travels with the workflows a request starts, so their lines and their activities' lines
carry it: the client puts it in a Temporal header (here), the worker reads it back into logs.request_id
(observability/interceptors.py, which the API never imports: the SDK's worker is ~3 MB it would carry for nothing).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import temporalio.converter
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

from observability import logs

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
