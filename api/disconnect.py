"""`ClientGone`: an `asyncio.Event` set when the client disconnects, for a route whose service waits long.

The service is handed the event (it knows nothing of HTTP) and stops waiting once it is set: a long poll or
a chat's wait for a client that has gone away is cancelled instead of running to its end (services/waiting).
Only for routes whose body, if any, FastAPI has already read: the watcher reads the ASGI receive channel
itself, where after the body nothing but `http.disconnect` arrives.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import suppress
from typing import Annotated

from fastapi import Depends, Request
from starlette.types import Receive


async def _watch(receive: Receive, gone: asyncio.Event) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass  # the (already read) body's last message, or nothing more
    gone.set()


async def client_gone(request: Request) -> AsyncIterator[asyncio.Event]:
    gone = asyncio.Event()
    watcher = asyncio.create_task(_watch(request.receive, gone))
    try:
        yield gone
    finally:
        watcher.cancel()
        with suppress(asyncio.CancelledError):
            await watcher


ClientGone = Annotated[asyncio.Event, Depends(client_gone, scope="function")]
