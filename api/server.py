"""The command that serves the API: uvicorn with the app factory, as `statex api`, `statex run` and the image
run it. Kept apart from api/app.py so that building the command does not import the app."""

from __future__ import annotations

import sys

from settings import Settings


def api_command(settings: Settings) -> list[str]:
    """The one way the API is served (`statex api`, `statex run`, the image): uvicorn on uvloop and httptools
    (installed with the project; uvicorn's `auto` picks them), one process per core in production."""
    command = [
        sys.executable,
        "-m",
        "uvicorn",
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
