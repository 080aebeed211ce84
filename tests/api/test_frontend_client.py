"""`statex openapi`: the document frontend-client/ generates its TypeScript client from, written without serving
the API, is the one the API serves; and that folder pins its generator exactly, through a committed lock."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import AppFactory

from cli import write_openapi
from settings import Settings

FOLDER = Path(__file__).resolve().parents[2] / "frontend-client"


def test_the_written_document_is_the_served_one(settings: Settings, make_app: AppFactory, tmp_path: Path) -> None:
    written = tmp_path / "openapi.json"
    assert write_openapi(settings, written) == 0
    document = json.loads(written.read_text())
    assert document == make_app().openapi()
    view = document["components"]["schemas"]["PrototypeView"]
    assert "events_url" in view["required"]  # what the page reads


def test_the_generator_and_typescript_are_pinned_by_the_lock() -> None:
    manifest = json.loads((FOLDER / "package.json").read_text())
    lock = json.loads((FOLDER / "package-lock.json").read_text())
    pinned = manifest["devDependencies"]
    assert set(pinned) == {"@hey-api/openapi-ts", "typescript"}
    for name, version in pinned.items():
        assert version[0].isdigit(), f"{name} {version}: an exact version"
        assert lock["packages"][f"node_modules/{name}"]["version"] == version
