"""A lean HTTP/1.1 keep-alive client for the load generators: a request is bytes written on a pooled
connection and an answer read up to its Content-Length. An HTTP client library would cost the generator a
millisecond or more of CPU per request on the cores the servers need, which the servers' figures would then
pay for."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def run(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run on uvloop when it is installed (it is with the `run` extra): the generator's own event loop
    costs less of the CPU the servers share. The garbage collector is off meanwhile (what was already there
    frozen out of its reach): a collection over ten thousand pending requests stalls the generator, and every
    request due in that time would be counted as the server's latency."""
    try:
        import uvloop

        runner: Callable[[Coroutine[Any, Any, T]], T] = uvloop.run
    except ImportError:
        runner = asyncio.run
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        return runner(main)
    finally:
        gc.enable()
        gc.unfreeze()


def request_bytes(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Pool:
    """At most `size` connections to 127.0.0.1:`port`, opened on first use and kept."""

    def __init__(self, port: int, size: int) -> None:
        self.port = port
        self.idle: asyncio.Queue[Connection | None] = asyncio.Queue()
        for _ in range(size):
            self.idle.put_nowait(None)

    async def send(self, request: bytes) -> tuple[int, bytes]:
        """The answer's status and body; a connection that failed is closed and replaced by a new one later."""
        connection = await self.idle.get()
        try:
            if connection is None:
                connection = await asyncio.open_connection("127.0.0.1", self.port)
            reader, writer = connection
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = next(
                (
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                0,
            )
            body = await reader.readexactly(length)
            self.idle.put_nowait(connection)
            return status, body
        except BaseException:
            if connection is not None:
                connection[1].close()
            self.idle.put_nowait(None)
            raise

    async def connect_all(self) -> None:
        """Open every connection now: a measure then starts on established connections, as wrk's do, rather than
        with a storm of connects (one per request until all are open) that no steady rate has."""
        opened = []
        while not self.idle.empty():
            connection = self.idle.get_nowait()
            opened.append(connection or await asyncio.open_connection("127.0.0.1", self.port))
        for connection in opened:
            self.idle.put_nowait(connection)

    def close(self) -> None:
        while not self.idle.empty():
            connection = self.idle.get_nowait()
            if connection is not None:
                connection[1].close()
