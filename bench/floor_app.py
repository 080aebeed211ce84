"""The memory anchor: everything a served API process holds except the project's own code. Its RSS at rest is
the floor the project's memory stands on (the libraries, the interpreter, the same connections), so the project's
figure reads against what its stack costs before any route, model or workflow of ours is loaded.

`python -m bench.floor_app` (with the bench's environment) lists the modules an API process has loaded once
its lifespan has started: `api.app.serve()`, then startup, as uvicorn runs them. bench/compare.py hands that list
to `create_app` (uvicorn's factory, on the project's server flags) in BENCH_FLOOR_MODULES: it imports every one
of them that is not the project's, opens the same database pool and a Temporal connection, says so with a file
in BENCH_FLOOR_READY (one per process), and answers /health.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

ROOT = Path(__file__).resolve().parent.parent
SKIPPED = frozenset({"__main__", "__mp_main__"})


def is_project_module(name: str) -> bool:
    """A module of this repository (api, services, models, workflows, ...): its file is here, not in a venv."""
    module = sys.modules.get(name)
    file = getattr(module, "__file__", None)
    if not file:
        return False
    path = Path(file).resolve()
    return path.is_relative_to(ROOT) and not any(part.startswith(".venv") for part in path.parts)


async def loaded_by_api() -> list[str]:
    """The modules of a served API process, in the order they were imported, once its lifespan has started
    (the database pool warmed, the Temporal client connected): what sits in memory before the first request."""
    from api.app import serve

    app = serve()
    async with app.router.lifespan_context(app):
        return [name for name in sys.modules if name not in SKIPPED and not is_project_module(name)]


def create_app() -> FastAPI:
    """A bare FastAPI app in a process that has imported what the API imports, minus the project's code."""
    failed = 0
    for name in json.loads(os.environ["BENCH_FLOOR_MODULES"]):
        try:
            importlib.import_module(name)
        except Exception:  # a module that only imports as part of another's import: its parent brought it
            failed += 1
    from fastapi import FastAPI
    from sqlalchemy.ext.asyncio import create_async_engine
    from temporalio.client import Client

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        connections = int(os.environ.get("DATABASE_POOL_SIZE", 20))  # the settings' default: no project code here
        engine = create_async_engine(os.environ["DATABASE_URL"], pool_size=connections)
        async with AsyncExitStack() as held:  # the pool warmed as a served API warms its own
            for _ in range(connections):
                await held.enter_async_context(engine.connect())
        app.state.temporal = await Client.connect(os.environ["TEMPORAL_ADDRESS"])  # kept, as the API keeps its own
        (Path(os.environ["BENCH_FLOOR_READY"]) / str(os.getpid())).touch()  # this process is at rest now
        yield
        await engine.dispose()

    app = FastAPI(lifespan=lifespan)

    @app.get("/health")
    async def health() -> dict[str, int]:
        return {"modules_not_imported": failed}

    return app


if __name__ == "__main__":
    print(json.dumps(asyncio.run(loaded_by_api())))
