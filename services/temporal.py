"""One way to talk to Temporal from a request: the RPC timeout from settings, the workflow's own start
policy, and the same answers for every caller (a retry gets the existing run; a conflict is a 409).

A start that fails is asked about: if the workflow exists after all (the call timed out after the server
took it, or no worker accepted an update in time), the start counts as done and the work goes on once a
worker polls; only a start that certainly did not happen is a 503 that says nothing was done."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import timedelta
from typing import Any, TypeVar

from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowHandle,
    WorkflowUpdateHandle,
    WorkflowUpdateRPCTimeoutOrCancelledError,
    WorkflowUpdateStage,
)
from temporalio.common import TypedSearchAttributes
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.workflow import UpdateMethodMultiParam

from observability.logs import name_in_access_line
from services.errors import Conflict, Unavailable
from settings import Settings
from workflows.starting import StartPolicy

WorkflowClass = TypeVar("WorkflowClass")
Input = TypeVar("Input")
Output = TypeVar("Output")
Result = TypeVar("Result")

log = logging.getLogger(__name__)

UNAVAILABLE = "The workflow service is unavailable; nothing was saved, please try again"


def rpc_timeout(settings: Settings) -> timedelta:
    return timedelta(seconds=settings.temporal_rpc_timeout_seconds)


@contextmanager
def reaching_temporal(message: str = UNAVAILABLE) -> Iterator[None]:
    """Turn an unreachable or failing Temporal into a clear 503 for signals, queries and describes."""
    try:
        yield
    except RPCError as err:
        raise Unavailable(message) from err


def start_options(
    settings: Settings, id: str, policy: StartPolicy, search_attributes: TypedSearchAttributes, summary: str
) -> dict[str, Any]:
    """What every start says the same way: the task queue, the workflow's id policy, what the UI shows."""
    return {
        "id": id,
        "task_queue": settings.temporal_task_queue,
        "id_conflict_policy": policy.conflict_policy,
        "id_reuse_policy": policy.reuse_policy,
        "search_attributes": search_attributes,
        "static_summary": summary,
    }


async def start_workflow(
    temporal: Client,
    settings: Settings,
    run: Callable[[WorkflowClass, Input], Awaitable[Output]],
    arg: Input,
    *,
    id: str,
    policy: StartPolicy,
    search_attributes: TypedSearchAttributes,
    summary: str,
    **options: Any,
) -> WorkflowHandle[WorkflowClass, Output]:
    """Start `run` under the workflow module's `policy`. With an idempotent policy a repeated start (a retried
    request) gets the existing run, running or closed; otherwise a second start is a 409. A call that failed
    but may have started the workflow all the same returns its handle; one that certainly did not is a 503."""
    try:
        handle = await temporal.start_workflow(
            run,
            arg,
            **start_options(settings, id, policy, search_attributes, summary),
            rpc_timeout=rpc_timeout(settings),
            **options,
        )
    except WorkflowAlreadyStartedError as err:
        if policy.idempotent:
            _log_start("workflow %s %s already started: a retry joins it", run, id)
            return temporal.get_workflow_handle_for(run, id)
        raise Conflict(f"Workflow {id} is already running") from err
    except RPCError as err:
        if not await _may_have_started(temporal, settings, id, err):
            raise Unavailable(UNAVAILABLE) from err
        _log_start("workflow %s %s: the start did not answer, but it may have happened; its row is kept", run, id)
        return temporal.get_workflow_handle_for(run, id)
    if not name_in_access_line(_type_of(run), id):  # the request's access line names it, else a line of its own
        _log_start("workflow %s %s started", run, id)
    return handle


def _log_start(message: str, run: Callable[..., Any], id: str) -> None:
    """Type and id of a workflow a request started or joined; the request id comes along (logs.request_id)."""
    workflow_type = _type_of(run)
    log.info(message, workflow_type, id, extra={"workflow_id": id, "workflow_type": workflow_type})


def _type_of(run: Callable[..., Any]) -> str:
    return run.__qualname__.partition(".")[0]


async def start_with_update(
    temporal: Client,
    settings: Settings,
    update: UpdateMethodMultiParam[[WorkflowClass], Result],
    run: Callable[[WorkflowClass, Input], Awaitable[Any]],
    arg: Input,
    *,
    id: str,
    policy: StartPolicy,
    search_attributes: TypedSearchAttributes,
    summary: str,
) -> WorkflowUpdateHandle[Result] | None:
    """Start `run` under `policy` (or join the run already going, if the policy allows) and send it `update`,
    in one call; return once a worker has accepted the update, then await its result with your own deadline.

    None: the workflow was started (or may have been) but no worker accepted the update within the RPC
    timeout, as while every worker is down or being replaced. The work goes on once a worker polls; the
    caller answers 202 and keeps what it staged, and a repeat of the request joins the run and asks again.
    A closed run the policy will not start again is a 409 (it cannot take the update); a start that
    certainly did not happen (Temporal unreachable, the workflow not there) is a 503."""
    operation = WithStartWorkflowOperation(run, arg, **start_options(settings, id, policy, search_attributes, summary))
    try:
        accepted = await temporal.start_update_with_start_workflow(
            update,
            start_workflow_operation=operation,
            wait_for_stage=WorkflowUpdateStage.ACCEPTED,
            rpc_timeout=rpc_timeout(settings),
        )
    except WorkflowAlreadyStartedError as err:
        await _collect_start(operation)
        raise Conflict(f"Workflow {id} has already run and cannot be started again") from err
    except (WorkflowUpdateRPCTimeoutOrCancelledError, RPCError) as err:
        await _collect_start(operation)
        if not await _may_have_started(temporal, settings, id, err):
            raise Unavailable(UNAVAILABLE) from err
        _log_start("workflow %s %s started or joined; no worker has taken its update yet", run, id)
        return None
    _log_start("workflow %s %s started or joined with an update", run, id)
    return accepted


async def _collect_start(operation: WithStartWorkflowOperation[Any, Any]) -> None:
    """The SDK also stores the start's outcome on the operation (set by the time the call has failed); read
    it, or asyncio logs a failed start as an exception nobody retrieved. The caller raises the real error."""
    with suppress(Exception):
        await operation.workflow_handle()


async def _may_have_started(temporal: Client, settings: Settings, id: str, err: Exception) -> bool:
    """Whether a start call that failed with `err` may have started workflow `id` all the same. Temporal is
    asked: a workflow it describes exists, one it does not know was not started. When it cannot be asked, a
    call that timed out may have reached the server (True), one it refused or never reached did not."""
    try:
        await temporal.get_workflow_handle(id).describe(rpc_timeout=rpc_timeout(settings))
    except RPCError as unknown:
        if unknown.status == RPCStatusCode.NOT_FOUND:
            return False
        return _timed_out(err)
    return True


def _timed_out(err: Exception) -> bool:
    """A call that ran out of time (or was cancelled) after it was sent, as opposed to one refused or unsent."""
    if isinstance(err, WorkflowUpdateRPCTimeoutOrCancelledError):
        return True
    return isinstance(err, RPCError) and err.status in (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED)
