"""The worker's interceptors, apart from the client's so that the API process never imports the SDK's worker.

- RequestIdFromHeaders: workflow and activity lines carry the request id the client put in the headers
  (observability/request_ids.py) and the workflow id. Workflow side, it only reads headers and sets context
  variables (no I/O, no commands, the same on every replay), so it is deterministic; the context variables are
  observability/logs.py's,
  outside the sandbox (the worker hands the sandbox these classes, it does not re-import them), which is where
  the log formatter reads.
- SentryInterceptor: activity failures worth a page, each in its own isolation scope.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, NoReturn

from temporalio import activity, workflow
from temporalio.api.common.v1 import Payload
from temporalio.exceptions import ApplicationError
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

from observability import logs
from observability.request_ids import request_id_in, with_request_id
from observability.sentry import report
from settings import Settings

REPORT_AFTER_ATTEMPTS = 3

# --- request ids ----------------------------------------------------------------------------------------


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


# --- Sentry -------------------------------------------------------------------------------------------


class _SentryActivityInbound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        """Each activity gets its own isolation scope, as each request does in the API, so its breadcrumbs
        never ride along with another activity's error."""
        import sentry_sdk  # installed only beside init_sentry (sentry_worker_interceptors), so already imported

        info = activity.info()
        with sentry_sdk.isolation_scope() as scope:
            scope.set_tag("temporal.activity", info.activity_type)
            scope.set_tag("temporal.workflow", info.workflow_type)
            scope.set_context(
                "temporal",
                {"workflow_id": info.workflow_id, "activity_id": info.activity_id, "attempt": info.attempt},
            )
            try:
                return await super().execute_activity(input)
            except Exception as err:
                if worth_reporting(err, info.attempt):
                    report(err)
                raise


def worth_reporting(err: BaseException, attempt: int) -> bool:
    """A failure no retry will fix, or one that has outlived a few retries: a provider's passing 429 or 503,
    which Temporal retries away, should not page anyone."""
    if isinstance(err, ApplicationError) and err.non_retryable:
        return True
    if isinstance(err, asyncio.CancelledError):
        return False
    return attempt == REPORT_AFTER_ATTEMPTS


class SentryInterceptor(Interceptor):
    """Reports activity failures (with workflow id and attempt) from the worker."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _SentryActivityInbound(next)


def sentry_worker_interceptors(settings: Settings) -> list[Interceptor]:
    return [SentryInterceptor()] if settings.sentry_dsn is not None else []
