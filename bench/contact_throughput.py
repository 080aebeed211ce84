"""How many contact messages per second the API accepts, and how long until every email is in the outbox.

.venv/bin/python -m bench.contact_throughput [messages] [concurrency]
"""

from __future__ import annotations

import asyncio
import sys
import time

from bench.stack import running_stack


async def main(messages: int, concurrency: int) -> None:
    async with running_stack() as stack:
        gate = asyncio.Semaphore(concurrency)

        async def submit(index: int) -> float:
            async with gate:
                started = time.perf_counter()
                response = await stack.http.post(
                    "/api/contact",
                    json={"name": "Bench", "email": f"bench{index}@example.com", "message": "A benchmark message."},
                )
                response.raise_for_status()
                return time.perf_counter() - started

        started = time.perf_counter()
        latencies = sorted(await asyncio.gather(*(submit(i) for i in range(messages))))
        accepted_in = time.perf_counter() - started
        outbox = stack.settings.outbox_dir
        while len(list(outbox.glob("*.eml"))) < 2 * messages:
            if time.perf_counter() - started > 600:
                raise SystemExit("emails did not all arrive within 10 minutes")
            await asyncio.sleep(0.05)
        delivered_in = time.perf_counter() - started

    print(f"contact messages: {messages}, concurrency {concurrency} (SQLite, Temporal dev server on SQLite/WAL)")
    print(f"  accepted:  {messages / accepted_in:8.1f} messages/s  ({accepted_in:.2f} s)")
    print(
        f"  latency:   p50 {latencies[len(latencies) // 2] * 1000:.1f} ms, p95 "
        f"{latencies[int(len(latencies) * 0.95)] * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms"
    )
    print(
        f"  delivered: all {2 * messages} emails in {delivered_in:.2f} s ({2 * messages / delivered_in:.1f} emails/s)"
    )


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    parallel = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    asyncio.run(main(count, parallel))
