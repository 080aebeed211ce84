"""Worker Versioning from the client's side: make a worker build the current version of its Worker Deployment,
as `statex make-current` does after a rollout (docs/operations.md, "Deploying new workflow code")."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from temporalio.api.deployment.v1 import WorkerDeploymentInfo
from temporalio.api.enums.v1 import RoutingConfigUpdateState
from temporalio.api.workflowservice.v1 import (
    DescribeWorkerDeploymentRequest,
    SetWorkerDeploymentCurrentVersionRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

POLL_EVERY_SECONDS = 0.25


async def describe_deployment(client: Client, deployment: str) -> WorkerDeploymentInfo | None:
    """The deployment's versions and routing; None before a worker of it has polled (it does not exist yet)."""
    try:
        described = await client.workflow_service.describe_worker_deployment(
            DescribeWorkerDeploymentRequest(namespace=client.namespace, deployment_name=deployment)
        )
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    return described.worker_deployment_info


async def make_current(client: Client, deployment: str, build_id: str, *, within: float) -> None:
    """Version `deployment`.`build_id` made current: once its workers poll (Temporal refuses a version it has not
    seen), then until every task queue routes to it (the change reaches them asynchronously). TimeoutError when
    that takes longer than `within` seconds; the version may be current by then, the queues not yet routed."""

    async def polling() -> bool:
        info = await describe_deployment(client, deployment)
        return info is not None and any(
            summary.deployment_version.build_id == build_id for summary in info.version_summaries
        )

    async def routed() -> bool:
        info = await describe_deployment(client, deployment)
        return (
            info is not None
            and info.routing_config.current_deployment_version.build_id == build_id
            and info.routing_config_update_state == RoutingConfigUpdateState.ROUTING_CONFIG_UPDATE_STATE_COMPLETED
        )

    async with asyncio.timeout(within):
        await _until(polling)
        await client.workflow_service.set_worker_deployment_current_version(
            SetWorkerDeploymentCurrentVersionRequest(
                namespace=client.namespace, deployment_name=deployment, build_id=build_id
            )
        )
        await _until(routed)


async def _until(condition: Callable[[], Awaitable[bool]]) -> None:
    """Asks the server again every POLL_EVERY_SECONDS: it has no way to tell us."""
    while True:
        if await condition():
            return
        await asyncio.sleep(POLL_EVERY_SECONDS)
