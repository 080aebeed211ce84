"""The Fastify anchor for `python -m bench.compare`: bench/fastify (server.js and its package.json, pinned by the
committed package-lock.json) installed from the npm registry once, when node and npm are on PATH.

`npm ci` rather than `npm install`: it installs exactly what the committed lock says and never rewrites it (no
lock churn, and the same Fastify in every run, so runs compare); it runs only when node_modules is missing or
older than the lock. Nothing else is downloaded."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

FOLDER = Path(__file__).with_name("fastify")
INSTALL_SECONDS = 300


def installed(folder: Path = FOLDER) -> bool:
    """npm writes node_modules/.package-lock.json on every install: present and not older than the lock."""
    marker, lock = folder / "node_modules" / ".package-lock.json", folder / "package-lock.json"
    return marker.is_file() and marker.stat().st_mtime >= lock.stat().st_mtime


def prepare(folder: Path = FOLDER) -> str | None:
    """Install if needed; the reason the anchor is skipped, or None when it can run."""
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        return f"{' and '.join(missing)} not on PATH"
    if installed(folder):
        return None
    try:
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"],
            cwd=folder,
            check=True,
            capture_output=True,
            timeout=INSTALL_SECONDS,
        )
    except subprocess.CalledProcessError as error:
        tail = error.stderr.decode(errors="replace").strip().splitlines()[-3:]
        return f"`npm ci` failed ({error.returncode}): {' / '.join(tail)}"
    except subprocess.TimeoutExpired:
        return f"`npm ci` did not finish within {INSTALL_SECONDS} s"
    return None


def command(folder: Path = FOLDER) -> list[str]:
    return [str(shutil.which("node")), str(folder / "server.js")]


def environment(port: int, workers: int, bodies: dict[str, str]) -> dict[str, str]:
    """What server.js reads: its port, its process count, and the bytes to answer on each path."""
    return {"BENCH_PORT": str(port), "BENCH_WORKERS": str(workers), "BENCH_BODIES": json.dumps(bodies)}
