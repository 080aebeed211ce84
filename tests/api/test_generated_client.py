"""A typed client generated from the live OpenAPI by a real generator (openapi-python-client, offline) drives
the API as a frontend team would: register, log in, upload, submit a prototype and poll it, check out with
Stripe at the local emulator. Its method names must read well, and every error must parse as the envelope."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from conftest import AppFactory, executable, running_worker
from fakes.stripe_emulator import SECRET_KEY, running_localstripe
from helpers import new_email
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from api.app import create_app
from settings import Settings


class Generated:
    """A client package generated into a folder of its own, under a name of its own (imports are cached)."""

    def __init__(self, spec: dict[str, Any], folder: Path) -> None:
        self.name = f"statex_client_{uuid.uuid4().hex[:8]}"
        self.folder = folder
        self.package = generate(spec, folder, self.name)
        self.models = importlib.import_module(f"{self.name}.models")
        self.types = importlib.import_module(f"{self.name}.types")

    def operation(self, tag: str, operation_id: str) -> ModuleType:
        return importlib.import_module(f"{self.name}.api.{tag}.{operation_id}")

    def operations(self) -> set[str]:
        return {path.stem for path in (self.folder / self.name / "api").rglob("*.py") if path.stem != "__init__"}


@pytest.fixture(scope="module")
def localstripe_url() -> Iterator[str]:
    with running_localstripe() as url:
        yield url


def generate(spec: dict[str, Any], folder: Path, name: str) -> ModuleType:
    (folder / "openapi.json").write_text(json.dumps(spec))
    result = subprocess.run(
        [
            executable("openapi-python-client"),
            "generate",
            "--path",
            str(folder / "openapi.json"),
            "--output-path",
            str(folder / name),
            "--meta",
            "none",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Warning" not in result.stdout, result.stdout  # every schema understood, nothing skipped
    sys.path.insert(0, str(folder))
    return importlib.import_module(name)


def test_the_generated_names_read_well(make_app: AppFactory, tmp_path: Path) -> None:
    modules = Generated(make_app().openapi(), tmp_path).operations()
    expected = {"auth_register", "auth_login", "files_upload", "files_download", "prototypes_get", "payments_checkout"}
    assert expected <= modules
    assert not [name for name in modules if "_post" in name or "_get_" in name or "api_" in name], modules


@pytest.mark.slow
async def test_a_generated_client_registers_uploads_prototypes_and_pays(
    settings: Settings, temporal: Client, engine: AsyncEngine, tmp_path: Path, localstripe_url: str
) -> None:
    stripe = settings.model_copy(
        update={
            "stripe_secret_key": SecretStr(SECRET_KEY),
            "stripe_webhook_secret": SecretStr("whsec_generated_client"),
            "stripe_api_base": localstripe_url,
        }
    )
    app = create_app(stripe, temporal=temporal)
    generated = Generated(app.openapi(), tmp_path)
    client_package, models, types = generated.package, generated.models, generated.types

    async with running_worker(temporal, stripe, engine), app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
        anonymous = client_package.Client(base_url="http://testserver")
        anonymous.set_async_httpx_client(httpx.AsyncClient(transport=transport, base_url="http://testserver"))
        email, password = new_email(), "correct horse battery"

        registered = await generated.operation("auth", "auth_register").asyncio(
            client=anonymous, body=models.RegisterRequest(email=email, password=password, name="Ada")
        )
        assert isinstance(registered, models.RegistrationAccepted)
        tokens = await generated.operation("auth", "auth_login").asyncio(
            client=anonymous, body=models.LoginRequest(email=email, password=password)
        )
        assert isinstance(tokens, models.TokenPair)

        signed_in = client_package.AuthenticatedClient(base_url="http://testserver", token=tokens.access_token)
        signed_in.set_async_httpx_client(
            httpx.AsyncClient(
                transport=transport,
                base_url="http://testserver",
                headers={"Authorization": f"Bearer {tokens.access_token}"},
            )
        )

        png = b"\x89PNG\r\n\x1a\n" + bytes(300)
        uploaded = await generated.operation("files", "files_upload").asyncio(
            client=signed_in,
            body=models.FilesUploadBody(file=types.File(payload=png, file_name="mockup.png", mime_type="image/png")),
        )
        assert isinstance(uploaded, models.UploadedFile) and uploaded.size == len(png)

        accepted = await generated.operation("prototypes", "prototypes_submit").asyncio(
            client=signed_in, body=models.PrototypeRequest(idea="A to-do list for climbers")
        )
        assert isinstance(accepted, models.PrototypeAccepted)
        done = await generated.operation("prototypes", "prototypes_get").asyncio(
            client=signed_in, prototype_id=accepted.prototype_id, wait=30
        )
        assert isinstance(done, models.PrototypeView) and done.status == models.PrototypeStatus.COMPLETED

        checkout = await generated.operation("payments", "payments_checkout").asyncio_detailed(
            client=signed_in,
            body=models.CheckoutRequest(tier=models.ServiceTier.PREMIUM, gateway=models.PaymentGateway.STRIPE),
        )
        assert checkout.status_code == 201, checkout.content
        assert checkout.parsed.payment.next_action.client_secret

        # An error parses as the envelope: someone else's (here: no one's) file is a typed 404.
        missing = await generated.operation("files", "files_download").asyncio_detailed(
            client=signed_in, file_id=accepted.prototype_id
        )
        assert missing.status_code == 404
        assert isinstance(missing.parsed, models.ErrorResponse) and missing.parsed.error == "File not found"
