"""The command that serves the API: uvicorn with the app factory, as `statex api`, `statex run` and the image
run it. Kept apart from api/app.py so that building the command does not import the app."""

from __future__ import annotations

import signal
import sys
from types import FrameType
from typing import NoReturn

import uvicorn

from settings import Settings


def api_command(settings: Settings) -> list[str]:
    """The one way the API is served (`statex api`, `statex run`, the image): uvicorn on uvloop and httptools
    (installed with the project; uvicorn's `auto` picks them), one process per core in production."""
    command = [
        sys.executable,
        "-m",
        "api.server",  # uvicorn's command line, ending with status 0 after a SIGTERM (see main)
        "api.app:serve",  # logging from settings, uvicorn's access log replaced by the request log
        "--factory",
        "--host",
        settings.api_host,
        "--port",
        str(settings.api_port),
        "--workers",
        str(settings.effective_api_workers),
        "--loop",
        "auto",
        "--http",
        "auto",
        "--timeout-graceful-shutdown",  # on SIGTERM: no new connections, requests in flight finish
        str(settings.api_shutdown_grace_seconds),
        "--no-server-header",  # `server: uvicorn` tells an attacker which server's flaws to try
        "--no-access-log",  # the access line of api/edge.py replaces it, with request ids and no tokens
    ]
    return command


def main() -> None:
    """uvicorn's own command line, in a process that a SIGTERM ends with status 0 once uvicorn has drained it.

    uvicorn catches SIGTERM, stops accepting connections, lets requests in flight finish (within
    API_SHUTDOWN_GRACE_SECONDS), then raises the signal again for the handler that was there before it. With
    the default handler a single-process server would die *of* SIGTERM (status 143), which compose and
    Kubernetes report as an error; this handler turns the finished drain into a clean exit. (With several
    processes uvicorn's supervisor handles the signal itself and exits 0.)"""
    signal.signal(signal.SIGTERM, _drained)
    uvicorn.main()


def _drained(signum: int, frame: FrameType | None) -> NoReturn:
    raise SystemExit(0)


if __name__ == "__main__":
    main()
