"""Statex past one process, on one machine: two API processes and three workers against one Temporal dev server,
one PostgreSQL database and the local Stripe emulator, each process configured by environment; a worker killed
with SIGKILL every few seconds while checkouts (paid and declined) and a prototype run. Nothing may be lost and
nothing done twice (bench/scale.py's checks: the rows, the emulator's PaymentIntents, the outbox).

Seven Python processes and a Temporal server take a busy 2-core machine two to three minutes to start and run,
so this runs only when asked: STATEX_SCALE_TEST=1 (CI's scale part sets it).
`python -m bench.scale` is the same run with larger counts.
"""

from __future__ import annotations

import os

import pytest

from bench.scale import chaos, running

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("STATEX_SCALE_TEST") != "1", reason="starts 8 processes (2-3 min): set STATEX_SCALE_TEST=1"
    ),
    pytest.mark.timeout(1500),
]


async def test_workers_killed_mid_run_lose_nothing_and_do_nothing_twice(pg_admin_url: str) -> None:
    # Ports below the ephemeral range, away from bench.scale's default (18400), so both may run at once.
    async with running(apis=2, workers=3, port_base=18450, pg_admin_url=pg_admin_url) as scale:
        report = await chaos(
            scale,
            checkouts=6,
            declined=2,
            prototypes=1,
            concurrency=7,
            kill_every=(1.0, 3.0),
            max_kills=6,
            seed=26,
        )
    print(report.summary())
    assert report.kills >= 1, "no worker was killed: the run proved nothing about kills"
    assert len(report.checkouts) == 6 and len(report.prototypes) == 1
    assert report.problems == []
