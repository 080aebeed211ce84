"""Waiting on the network for a caller who may leave: a wait that ends as soon as nobody is left to answer.

A long poll or a chat's wait can hold a request for up to a minute. If its client disconnects meanwhile, the
wait (a Temporal result stream, a timer) would otherwise run to its end for nobody, and under overload those
abandoned waits are what keeps a process busy after the clients have gone. The service stays free of HTTP:
it is handed an `asyncio.Event` that the API sets when the client disconnects (api/disconnect.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from observability import metrics

T = TypeVar("T")


class CallerGone(Exception):
    """The caller went away while the service waited on its behalf; the wait was cancelled."""


async def wait_for_caller(work: Awaitable[T], seconds: float, gone: asyncio.Event | None, *, what: str) -> T:
    """`work`'s result within `seconds` (TimeoutError past it, `work` cancelled). Once `gone` is set,
    `work` is cancelled and CallerGone raised. Counted under `what` in statex_waits_in_progress while it
    waits, and in statex_waits_abandoned if the caller left."""
    if gone is None:
        return await asyncio.wait_for(work, seconds)
    task = asyncio.ensure_future(work)
    left = asyncio.create_task(gone.wait())
    try:
        with metrics.waits_in_progress.labels(what).track_inprogress():
            await asyncio.wait({task, left}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        left.cancel()
        if not task.done():  # nobody will read its result: cancel it, and let the cancellation finish
            task.cancel()
            await asyncio.wait({task})
    if task.done() and not task.cancelled():
        return task.result()  # finished in time (even if the caller left in the same instant)
    if gone.is_set():
        metrics.waits_abandoned.labels(what).inc()
        raise CallerGone(what)
    raise TimeoutError
