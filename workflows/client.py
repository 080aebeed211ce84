"""How the API and the worker reach Temporal: one connection recipe, one data converter."""

from __future__ import annotations

from temporalio.client import Client, TLSConfig
from temporalio.runtime import Runtime

from observability.request_ids import RequestIdToWorkflows
from observability.tracing import temporal_interceptors
from settings import Settings
from workflows.codec import data_converter


async def connect(settings: Settings, *, runtime: Runtime | None = None) -> Client:
    """`runtime`: the worker's, which exports the SDK's metrics; unset, the SDK's default one."""
    tls: TLSConfig | bool = settings.temporal_tls
    if settings.temporal_tls_client_cert_path and settings.temporal_tls_client_key_path:
        tls = TLSConfig(
            client_cert=settings.temporal_tls_client_cert_path.read_bytes(),
            client_private_key=settings.temporal_tls_client_key_path.read_bytes(),
        )
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        api_key=settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None,
        tls=tls or bool(settings.temporal_api_key),
        data_converter=data_converter(settings),
        # A workflow's log lines carry the id of the request that started it; its spans, the request's trace.
        interceptors=[RequestIdToWorkflows(), *temporal_interceptors(settings)],
        runtime=runtime,
    )
