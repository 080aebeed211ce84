"""One trace from the request to the last activity: FastAPI's span, the workflow's and each activity's share
a trace id (in-memory exporter; in production the same spans go over OTLP)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from conftest import AppFactory
from helpers import eventually, serve
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from api.app import create_app
from observability.request_ids import RequestIdToWorkflows
from observability.tracing import temporal_interceptors, trace_requests
from settings import Settings
from worker import build_worker
from workflows.contact import workflow_id


async def test_a_contact_request_and_its_activities_share_one_trace(
    temporal: Client, settings: Settings, engine: AsyncEngine
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    traced = Client(
        temporal.service_client,
        namespace=temporal.namespace,
        data_converter=temporal.data_converter,
        interceptors=[RequestIdToWorkflows(), *temporal_interceptors(settings, provider.get_tracer("statex-test"))],
    )
    app = create_app(settings, temporal=traced)
    trace_requests(app, provider)
    async with build_worker(traced, settings, engine), serve(app) as api:
        sender = f"trace-{uuid.uuid4().hex[:8]}@example.com"
        accepted = await api.post("/api/contact", json={"name": "Ada", "email": sender, "message": "trace me"})
        assert accepted.status_code == 202, accepted.text
        await traced.get_workflow_handle(workflow_id(uuid.UUID(accepted.json()["contact_id"]))).result()

        def spans_named(prefix: str) -> list[object]:
            return [span for span in exporter.get_finished_spans() if span.name.startswith(prefix)]

        await eventually(lambda: _ready(spans_named("RunActivity:send_contact_email")), what="the activities' spans")
    [request] = [span for span in exporter.get_finished_spans() if span.name == "POST /api/contact"]
    trace_id = request.context.trace_id
    started = spans_named("StartWorkflow:ContactWorkflow")
    activities = spans_named("RunActivity:")
    assert started and len(activities) >= 3  # two emails and the contact's row
    assert {span.context.trace_id for span in [*started, *activities]} == {trace_id}  # type: ignore[attr-defined]


async def _ready(spans: list[object]) -> bool:
    return len(spans) >= 2


async def test_a_request_asks_opentelemetry_for_no_provider(
    make_app: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FastAPI's own telemetry is off (the spans come from trace_requests when tracing is on): it looked up
    OpenTelemetry's tracer, meter and logger providers on every request."""
    from opentelemetry import _logs, metrics, trace

    asked: list[str] = []
    for module, name in (
        (trace, "get_tracer_provider"),
        (metrics, "get_meter_provider"),
        (_logs, "get_logger_provider"),
    ):
        real = getattr(module, name)

        def noting(real: Any = real, name: str = name) -> Any:
            asked.append(name)
            return real()

        monkeypatch.setattr(module, name, noting)
    async with serve(make_app()) as api:
        asked.clear()  # what the lifespan asked at startup is not a request's cost
        assert (await api.get("/api/payments/catalogue")).status_code == 200
    assert asked == []


async def test_a_token_in_the_query_string_never_reaches_a_trace(make_app: AppFactory) -> None:
    """A stream's `events_url` and a download link carry `?token=`: the request span records the URL with the
    token filtered, as the log lines do."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = make_app()
    trace_requests(app, provider)
    secret = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0.s1gnature"
    async with serve(app) as api:
        answered = await api.get(f"/api/prototypes/{uuid.uuid4()}/events", params={"token": secret, "x": "1"})
    assert answered.status_code == 401, answered.text
    [request] = [span for span in exporter.get_finished_spans() if span.kind.name == "SERVER"]
    recorded = {key: value for key, value in (request.attributes or {}).items() if isinstance(value, str)}
    assert any("token=" in value for value in recorded.values()), recorded  # the URL is recorded, filtered
    assert not [key for key, value in recorded.items() if secret in value], recorded
