"""Heartbeats for long activities, from the worker rather than from each activity's code.

An activity scheduled with a heartbeat timeout (workflows/timeouts.py's HEARTBEAT) heartbeats every third of it
while it runs, so a worker that dies (killed, its machine gone) stops heartbeating and Temporal retries the
activity elsewhere after that timeout, not after the call's whole start-to-close. Heartbeats also carry
cancellation to the activity: a cancelled workflow, or a worker shutting down past its grace, cancels the call.
An activity that heartbeats with details of its own keeps doing so; these heartbeats carry none.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress
from typing import Any

from temporalio import activity
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

BEATS_PER_TIMEOUT = 3


class HeartbeatWhileRunning(Interceptor):
    """The worker interceptor: every activity with a heartbeat timeout heartbeats while it runs."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Heartbeating(next)


class _Heartbeating(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        timeout = activity.info().heartbeat_timeout
        if not timeout:
            return await super().execute_activity(input)
        beating = asyncio.create_task(_beat(timeout.total_seconds() / BEATS_PER_TIMEOUT))
        try:
            return await super().execute_activity(input)
        finally:
            beating.cancel()
            with suppress(asyncio.CancelledError):
                await beating


async def _beat(every: float) -> None:
    while True:
        activity.heartbeat()
        await asyncio.sleep(every)
