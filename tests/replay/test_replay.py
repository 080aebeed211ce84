"""Every stored history replays against today's workflow code, and every workflow type has one; so do the
histories of the previous release (the newest `v*` tag), those re-recorded or removed since included.

A history that no longer replays means the change would break the workflows of that type still running:
guard the change with `workflow.patched(...)` (docs/architecture.md, "Replay tests and changing workflows").
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from payload_keys import CONVERTER
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from worker import WORKFLOWS

HERE = Path(__file__).resolve().parent
HISTORIES = sorted(HERE.rglob("*.json"))
RELEASE_TAGS = "v*"
"""How releases are tagged: `v` and the release's version, which is also the image tag and WORKER_BUILD_ID."""


def git(*args: str) -> str | None:
    """`git args` in this checkout, or None where it fails (no git, not a checkout, no such tag)."""
    executable = shutil.which("git")
    if executable is None:
        return None
    done = subprocess.run([executable, *args], cwd=HERE, capture_output=True, text=True, check=False)
    return done.stdout if done.returncode == 0 else None


def previous_release() -> str | None:
    described = git("describe", "--tags", "--abbrev=0", "--match", RELEASE_TAGS, "HEAD")
    return described.strip() if described else None


def changed_since(release: str) -> list[str]:
    """The release's histories (paths from the repository's root) that this checkout has changed or removed:
    the others are the files replayed above already."""
    listed = git("ls-tree", "-r", "--full-tree", release, "--", str(HERE.relative_to(repository_root())))
    changed = []
    for line in (listed or "").splitlines():
        meta, path = line.split("\t", 1)
        blob = meta.split()[2]
        here = repository_root() / path
        if path.endswith(".json") and (not here.exists() or git("hash-object", str(here)) != f"{blob}\n"):
            changed.append(path)
    return changed


def repository_root() -> Path:
    return HERE.parent.parent


RELEASE = previous_release()
RELEASE_HISTORIES = changed_since(RELEASE) if RELEASE is not None else []


def load(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(str(path.relative_to(HERE)), path.read_text())


def workflow_type(history: WorkflowHistory) -> str:
    return history.events[0].workflow_execution_started_event_attributes.workflow_type.name


async def assert_replays(history: WorkflowHistory) -> None:
    replayer = Replayer(workflows=list(WORKFLOWS), data_converter=CONVERTER)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    if result.replay_failure is not None:
        failure = f"{history.workflow_id} ({workflow_type(history)}) no longer replays: {result.replay_failure}"
        pytest.fail(failure, pytrace=False)


@pytest.mark.parametrize("path", HISTORIES, ids=lambda path: str(path.relative_to(HERE)))
async def test_history_replays(path: Path) -> None:
    await assert_replays(load(path))


@pytest.mark.skipif(RELEASE is None, reason=f"no release tag ({RELEASE_TAGS}) in this checkout")
@pytest.mark.parametrize("path", RELEASE_HISTORIES or [None], ids=str)
async def test_previous_release_history_replays(path: str | None) -> None:
    if path is None:
        pytest.skip(f"every history recorded at {RELEASE} is still here, unchanged (replayed above)")
    shown = git("show", f"{RELEASE}:{path}")
    assert shown is not None, f"git show {RELEASE}:{path} failed"
    await assert_replays(WorkflowHistory.from_json(f"{RELEASE}:{path}", shown))


def test_every_registered_workflow_has_a_recorded_history() -> None:
    # The SDK has no public accessor for a class's workflow type name; its definition is what the worker reads.
    registered = {workflow._Definition.must_from_class(cls).name for cls in WORKFLOWS}
    recorded = {workflow_type(load(path)) for path in HISTORIES}
    assert registered - recorded == set(), "record a history of each (python tests/replay/record.py)"
