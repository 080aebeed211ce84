"""Peak Python memory while one large file is uploaded: streamed to disk, it should stay far below its size.

.venv/bin/python -m bench.upload_memory [megabytes]
"""

from __future__ import annotations

import asyncio
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator

from bench.stack import running_stack, signed_in

CHUNK = 64 * 1024


async def multipart(size: int, boundary: str) -> AsyncIterator[bytes]:
    yield (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.pdf"\r\n'
        "Content-Type: application/pdf\r\n\r\n%PDF-1.7\n"
    ).encode()
    sent = 9
    block = bytes(CHUNK)
    while sent < size:
        piece = block[: min(CHUNK, size - sent)]
        sent += len(piece)
        yield piece
    yield f"\r\n--{boundary}--\r\n".encode()


async def main(megabytes: int) -> None:
    size = megabytes * 1024 * 1024
    async with running_stack(file_max_bytes=size + 1024) as stack:
        headers = await signed_in(stack.http)
        headers["Content-Type"] = "multipart/form-data; boundary=benchboundary"
        tracemalloc.start()
        started = time.perf_counter()
        response = await stack.http.post("/api/files/upload", content=multipart(size, "benchboundary"), headers=headers)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        response.raise_for_status()
    print(f"upload of {megabytes} MB: {elapsed:.2f} s ({megabytes / elapsed:.1f} MB/s)")
    print(f"  peak Python memory during the request: {peak / 1024 / 1024:.2f} MB ({peak / size:.1%} of the file)")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 25))
