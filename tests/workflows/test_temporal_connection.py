"""How the settings reach Temporal's Client.connect: a self-hosted cluster in plain gRPC, Temporal Cloud with an API
key (TLS implied), or mutual TLS with a client certificate (deploy/temporal/cloud.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from payload_keys import PAYLOAD_KEYS
from pydantic import SecretStr
from temporalio.client import Client, TLSConfig

from settings import Settings
from workflows.client import connect


@pytest.fixture
def connected(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every Client.connect call's target and options, none of them sent anywhere."""
    calls: list[dict[str, Any]] = []

    async def record(target_host: str, **options: Any) -> str:
        calls.append({"target_host": target_host, **options})
        return "client"

    monkeypatch.setattr(Client, "connect", record)
    return calls


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, environment="test", payload_keys=PAYLOAD_KEYS, **values)  # type: ignore[call-arg]


async def test_a_self_hosted_cluster_is_reached_without_tls_or_key(connected: list[dict[str, Any]]) -> None:
    await connect(settings(temporal_address="temporal-frontend.temporal.svc:7233", temporal_namespace="default"))
    (call,) = connected
    assert call["target_host"] == "temporal-frontend.temporal.svc:7233"
    assert call["namespace"] == "default"
    assert call["api_key"] is None and call["tls"] is False


async def test_temporal_cloud_with_an_api_key_connects_over_tls(connected: list[dict[str, Any]]) -> None:
    await connect(
        settings(
            temporal_address="eu-central-1.aws.api.temporal.io:7233",
            temporal_namespace="statex-production.a1b2c",
            temporal_api_key=SecretStr("cloud-api-key"),
        )
    )
    (call,) = connected
    assert call["target_host"] == "eu-central-1.aws.api.temporal.io:7233"
    assert call["namespace"] == "statex-production.a1b2c"
    assert call["api_key"] == "cloud-api-key"
    assert call["tls"] is True


async def test_a_client_certificate_is_sent_for_mutual_tls(connected: list[dict[str, Any]], tmp_path: Path) -> None:
    certificate, key = tmp_path / "client.pem", tmp_path / "client.key"
    certificate.write_bytes(b"certificate")
    key.write_bytes(b"key")
    await connect(
        settings(temporal_tls=True, temporal_tls_client_cert_path=certificate, temporal_tls_client_key_path=key)
    )
    (call,) = connected
    assert call["tls"] == TLSConfig(client_cert=b"certificate", client_private_key=b"key")
    assert call["api_key"] is None
