"""The `statex run` supervisor's restart rule: a dead worker comes back after a short backoff, a crash loop
stops the stack, any other child's death still ends the run. Real (tiny) processes, no Temporal."""

from __future__ import annotations

import asyncio
import sys

from devstack.supervisor import RestartPolicy, Stack

DEADLINE_SECONDS = 30.0
DIES = [sys.executable, "-c", "import sys; sys.exit(3)"]
LIVES = [sys.executable, "-c", "import time; time.sleep(600)"]


def test_backoff_doubles_up_to_its_cap_and_the_fifth_crash_within_a_minute_is_a_loop() -> None:
    policy = RestartPolicy()
    assert [policy.crashed(at) for at in (0.0, 1.0, 2.0, 3.0)] == [0.5, 1.0, 2.0, 4.0]
    assert policy.crashed(4.0) is None  # five within 60 s


def test_crashes_older_than_the_window_are_forgotten() -> None:
    policy = RestartPolicy(max_crashes=3, window_seconds=60.0, backoff_seconds=1.0, max_backoff_seconds=2.0)
    assert policy.crashed(0.0) == 1.0
    assert policy.crashed(10.0) == 2.0
    assert policy.crashed(100.0) == 1.0  # the two before are more than 60 s ago: a fresh start
    assert policy.crashed(110.0) == 2.0
    assert policy.crashed(120.0) is None  # three within 60 s: 100, 110, 120


async def test_a_child_with_a_restart_policy_is_restarted_until_it_crash_loops() -> None:
    stack = Stack()
    await stack.spawn("the worker", DIES, {}, restart=RestartPolicy(max_crashes=3, backoff_seconds=0.01))
    await stack.spawn("the API", LIVES, {})
    problem = await asyncio.wait_for(stack.ended, DEADLINE_SECONDS)
    await stack.stop()
    assert problem is not None
    assert problem.startswith("the worker exited with code 3: 3 crashes within 60 s, a crash loop; stopping")
    worker, api = stack.children
    assert worker.restart is not None and len(worker.restart.crashes) == 3
    assert api.process.returncode is not None  # the stop reached the child that was still serving


async def test_a_child_without_one_ends_the_run_as_before() -> None:
    stack = Stack()
    await stack.spawn("the API", DIES, {})
    assert await asyncio.wait_for(stack.ended, DEADLINE_SECONDS) == "the API exited with code 3 unexpectedly"
    await stack.stop()


async def test_a_stop_during_the_backoff_starts_nothing_more() -> None:
    stack = Stack()
    policy = RestartPolicy(backoff_seconds=60.0, max_backoff_seconds=60.0)
    await stack.spawn("the worker", DIES, {}, restart=policy)
    first = stack.children[0].process
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_SECONDS
    while not policy.crashes:  # it died, and its 60 s backoff began
        assert loop.time() < deadline, "the worker's death was not noticed"
        await asyncio.sleep(0.05)
    stack.end()
    await asyncio.wait_for(stack.stop(), DEADLINE_SECONDS)  # the backoff is cut short
    assert stack.children[0].process is first
