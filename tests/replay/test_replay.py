"""Every stored history replays against today's workflow code, and every workflow type has one.

A history that no longer replays means the change would break the workflows of that type still running:
guard the change with `workflow.patched(...)` (docs/architecture.md, "Replay tests and changing workflows").
"""

from __future__ import annotations

from pathlib import Path

import pytest
from payload_keys import CONVERTER
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from worker import WORKFLOWS

HERE = Path(__file__).resolve().parent
HISTORIES = sorted(HERE.rglob("*.json"))


def load(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(str(path.relative_to(HERE)), path.read_text())


def workflow_type(history: WorkflowHistory) -> str:
    return history.events[0].workflow_execution_started_event_attributes.workflow_type.name


@pytest.mark.parametrize("path", HISTORIES, ids=lambda path: str(path.relative_to(HERE)))
async def test_history_replays(path: Path) -> None:
    replayer = Replayer(workflows=list(WORKFLOWS), data_converter=CONVERTER)
    history = load(path)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    if result.replay_failure is not None:
        pytest.fail(
            f"{path.relative_to(HERE)} ({workflow_type(history)}) no longer replays: {result.replay_failure}",
            pytrace=False,
        )


def test_every_registered_workflow_has_a_recorded_history() -> None:
    # The SDK has no public accessor for a class's workflow type name; its definition is what the worker reads.
    registered = {workflow._Definition.must_from_class(cls).name for cls in WORKFLOWS}
    recorded = {workflow_type(load(path)) for path in HISTORIES}
    assert registered - recorded == set(), "record a history of each (python tests/replay/record.py)"
