"""Worker Versioning on a real Temporal dev server: with WORKER_BUILD_ID set, a worker is one version of the
Worker Deployment WORKER_DEPLOYMENT_NAME; once a new version is made current, a workflow of a type that chose no
behavior (as every application type) is AUTO_UPGRADE and moves to the new version at its next task, a PINNED one
keeps running on the version that started it, and new workflows start on the new version (docs/operations.md,
"Deploying new workflow code").

Two probe workflows stand in for the application's: each answers an update with the build id of the worker that
ran it; the upgrading one declares no behavior, as the application's types do, and gets the worker's default. The
rollout tests run on a dev server of this module's own, told to check drainage every second (the server's default
is every 3 minutes, after a 3-minute grace period); each test has its own deployment name and task queue."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import executable
from helpers import eventually
from temporalio import workflow
from temporalio.api.deployment.v1 import WorkerDeploymentInfo
from temporalio.api.enums.v1 import EventType, WorkerDeploymentVersionStatus
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.common import VersioningBehavior
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from cli import make_version_current
from settings import Settings
from worker import deployment_config
from workflows.versions import describe_deployment, make_current


class Probe:
    """What both probes share: `build_id` answers which build ran this task; `finish` ends the run."""

    def __init__(self) -> None:
        self._finished = False

    @workflow.update
    def build_id(self) -> str:
        version = workflow.info().get_current_deployment_version()
        return "unversioned" if version is None else version.build_id

    @workflow.signal
    def finish(self) -> None:
        self._finished = True

    async def _until_finished(self) -> None:
        await workflow.wait_condition(lambda: self._finished)


# Outside the sandbox: this module imports test helpers the sandbox would refuse, and the probes do no I/O.
@workflow.defn(versioning_behavior=VersioningBehavior.PINNED, sandboxed=False)
class PinnedProbe(Probe):
    @workflow.run
    async def run(self) -> None:
        await self._until_finished()


@workflow.defn(sandboxed=False)
class UpgradingProbe(Probe):
    @workflow.run
    async def run(self) -> None:
        await self._until_finished()


PROBES: Sequence[type[Probe]] = (PinnedProbe, UpgradingProbe)
DRAINAGE_CHECK = timedelta(seconds=1)
"""How often this module's server checks a draining version, and its grace period after a version stops being
current (visibility learns of a workflow's version a moment later)."""
ROLLOUT_SECONDS = 20.0
"""How long a version may take to poll and take over its task queue (a second or two on an idle machine)."""
AnyHandle = WorkflowHandle[Any, Any]
ROOT = Path(__file__).resolve().parents[2]


def versioned(deployment: str, build_id: str) -> Settings:
    return Settings(_env_file=None, worker_deployment_name=deployment, worker_build_id=build_id)  # type: ignore[call-arg]


@asynccontextmanager
async def probe_worker(client: Client, queue: str, settings: Settings) -> AsyncIterator[Worker]:
    async with Worker(
        client, task_queue=queue, workflows=list(PROBES), deployment_config=deployment_config(settings)
    ) as worker:
        yield worker


async def version_summary(
    client: Client, deployment: str, build_id: str
) -> WorkerDeploymentInfo.WorkerDeploymentVersionSummary:
    info = await describe_deployment(client, deployment)
    assert info is not None
    (summary,) = (each for each in info.version_summaries if each.deployment_version.build_id == build_id)
    return summary


async def start(client: Client, probe: type[Probe], queue: str) -> AnyHandle:
    return await client.start_workflow(probe.__name__, id=f"probe-{uuid.uuid4().hex}", task_queue=queue)


async def build_of(handle: AnyHandle) -> str:
    built: str = await handle.execute_update(Probe.build_id)
    return built


@dataclass
class Rollout:
    deployment: str
    pinned: AnyHandle
    upgrading: AnyHandle
    new_pinned: AnyHandle
    """Started once v2 was current."""


@asynccontextmanager
async def rolled_out(client: Client) -> AsyncIterator[Rollout]:
    """v1 current and a PINNED and an AUTO_UPGRADE probe started on it; then v2 deployed beside it and made
    current, and a PINNED probe started. Both workers run until the end; the probes still open are finished."""
    deployment, queue = f"versioning-{uuid.uuid4().hex[:8]}", f"versioning-{uuid.uuid4().hex[:8]}"
    async with AsyncExitStack() as running:
        await running.enter_async_context(probe_worker(client, queue, versioned(deployment, "v1")))
        await make_current(client, deployment, "v1", within=ROLLOUT_SECONDS)
        pinned, upgrading = await start(client, PinnedProbe, queue), await start(client, UpgradingProbe, queue)
        assert (await build_of(pinned), await build_of(upgrading)) == ("v1", "v1")
        await running.enter_async_context(probe_worker(client, queue, versioned(deployment, "v2")))
        await make_current(client, deployment, "v2", within=ROLLOUT_SECONDS)
        rollout = Rollout(deployment, pinned, upgrading, await start(client, PinnedProbe, queue))
        try:
            yield rollout
        finally:
            for handle in (pinned, upgrading, rollout.new_pinned):
                if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
                    await handle.signal(Probe.finish)
                    await handle.result()


@pytest.fixture(scope="module")
async def server() -> AsyncIterator[Client]:
    """This module's dev server: a draining version checked every DRAINAGE_CHECK."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=executable("temporal"),
        dev_server_extra_args=[
            arg
            for key in ("VersionDrainageStatusRefreshInterval", "VersionDrainageStatusVisibilityGracePeriod")
            for arg in ("--dynamic-config-value", f'matching.wv.{key}="{DRAINAGE_CHECK.seconds}s"')
        ],
        ui=False,
        dev_server_log_level="error",
    )
    try:
        yield env.client
    finally:
        await env.shutdown()


async def test_pinned_workflows_stay_on_their_version_and_auto_upgrade_ones_move(
    server: Client,
) -> None:
    async with rolled_out(server) as rollout:
        assert await build_of(rollout.pinned) == "v1", "a pinned workflow must finish on the code that started it"
        assert await build_of(rollout.upgrading) == "v2", "an auto-upgrade workflow moves to the current version"
        assert await build_of(rollout.new_pinned) == "v2", "new workflows start on the current version"


async def test_the_old_version_drains_when_its_last_pinned_workflow_ends(server: Client) -> None:
    async with rolled_out(server) as rollout:
        switched = datetime.now(UTC)

        async def checked_since_switch() -> WorkerDeploymentInfo.WorkerDeploymentVersionSummary | None:
            v1 = await version_summary(server, rollout.deployment, "v1")
            drainage = v1.drainage_info
            checked = drainage.last_checked_time.ToDatetime(UTC) if drainage.HasField("last_checked_time") else None
            # v1 stopped being current before `switched`: a check this late is past the grace period
            return v1 if checked is not None and checked > switched + 2 * DRAINAGE_CHECK else None

        v1 = await eventually(checked_since_switch, what="a drainage check of v1 after the grace period")
        assert v1.status == WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_DRAINING, v1

        await rollout.pinned.signal(Probe.finish)
        await rollout.pinned.result()

        async def drained() -> bool:
            v1 = await version_summary(server, rollout.deployment, "v1")
            return v1.status == WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_DRAINED

        await eventually(drained, what="v1 to be drained once its pinned workflow ended")


async def test_an_unversioned_worker_cannot_run_a_type_that_declares_a_behavior(server: Client) -> None:
    # Why the application's types declare none (docs/architecture.md): the server refuses the task of a type with
    # a behavior from an unversioned worker, and `make run`, the tests and single-machine deployments run one.
    queue = f"unversioned-{uuid.uuid4().hex[:8]}"
    async with probe_worker(server, queue, Settings(_env_file=None)):  # type: ignore[call-arg]
        await build_of(await start(server, UpgradingProbe, queue))  # one without a behavior runs there
        pinned = await server.start_workflow(
            PinnedProbe.__name__, id=f"probe-{uuid.uuid4().hex}", task_queue=queue, task_timeout=timedelta(seconds=1)
        )

        async def refused() -> bool:
            events = (await pinned.fetch_history()).events
            return any(event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT for event in events)

        await eventually(refused, what="the pinned probe's first task to be refused")
        await pinned.terminate()


async def test_statex_make_current_makes_the_release_current_once_its_workers_poll(
    server: Client, tmp_path: Path
) -> None:
    deployment, queue = f"versioning-{uuid.uuid4().hex[:8]}", f"versioning-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": server.service_client.config.target_host,
        "WORKER_DEPLOYMENT_NAME": deployment,
        "WORKER_BUILD_ID": "v1",
        "PYTHONPATH": str(ROOT),
    }
    command = [sys.executable, "-m", "cli", "make-current", "--within", str(ROLLOUT_SECONDS)]
    promoting = await asyncio.create_subprocess_exec(
        *command, cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    # Started with the workers, as right after a rollout: it waits for them to poll.
    async with probe_worker(server, queue, versioned(deployment, "v1")):
        output, _ = await asyncio.wait_for(promoting.communicate(), timeout=ROLLOUT_SECONDS + 30)
        assert promoting.returncode == 0, output.decode()
        info = await describe_deployment(server, deployment)
        assert info is not None and info.routing_config.current_deployment_version.build_id == "v1", info


def test_statex_make_current_wants_a_build_id(capsys: pytest.CaptureFixture[str]) -> None:
    assert make_version_current(Settings(_env_file=None), None, within=1) == 2  # type: ignore[call-arg]
    assert "WORKER_BUILD_ID" in capsys.readouterr().err


def test_without_a_build_id_the_worker_is_unversioned() -> None:
    assert deployment_config(Settings(_env_file=None)) is None  # type: ignore[call-arg]


@pytest.mark.parametrize("name", ["statex.v1", ""])
def test_a_deployment_name_with_a_dot_or_empty_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="worker_deployment_name"):
        Settings(_env_file=None, worker_deployment_name=name)  # type: ignore[call-arg]
