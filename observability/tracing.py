"""OpenTelemetry traces, when OTEL_EXPORTER_OTLP_ENDPOINT is set: one trace from a request through the
workflow it starts, into each activity and the HTTP calls they make (gateways, AI providers).

The API's spans come from FastAPI's instrumentation, Temporal's from temporalio's TracingInterceptor on the
client (the worker takes the client's interceptors), outgoing HTTP from httpx's instrumentation. Sentry keeps
working beside it: the two do not share anything. Without an endpoint none of it is imported: the SDK, the
OTLP exporter and the instrumentations cost the API some 30 MB it would carry for nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from settings import Settings

if TYPE_CHECKING:  # the SDK, its exporter and instrumentations load only when tracing is on (see each function)
    from fastapi import FastAPI
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from temporalio.client import Interceptor

_UNTRACED_ROUTES = "health,ready,metrics"  # probes and scrapes: noise in every trace view
_URL_ATTRIBUTES = ("http.url", "http.target", "url.full", "url.query")
"""Where the instrumentation records the request's query string: a stream's or a download link's token rides in
it (`?token=`), and a trace store keeps it as long as logs would."""


def configure_tracing(settings: Settings, component: str) -> TracerProvider | None:
    """The process's tracer provider, exporting over OTLP/HTTP; None (and no cost) without an endpoint."""
    if not settings.otel_exporter_otlp_endpoint:
        return None
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": f"statex-{component}"}))
    endpoint = settings.otel_exporter_otlp_endpoint.rstrip("/") + "/v1/traces"
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    trace.set_tracer_provider(provider)  # the Temporal interceptor and the httpx instrumentation use the global one
    HTTPXClientInstrumentor().instrument(tracer_provider=provider)
    return provider


def trace_requests(app: FastAPI, provider: TracerProvider) -> None:
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=provider, excluded_urls=_UNTRACED_ROUTES, server_request_hook=_redact_url
    )


def _redact_url(span: trace.Span, scope: dict[str, Any]) -> None:
    """The request span's URL attributes with their tokens filtered, as log lines and Sentry events have them."""
    from observability.redaction import redact

    attributes = getattr(span, "attributes", None) or {}  # an SDK span's; a span not recording has none
    for key in _URL_ATTRIBUTES:
        value = attributes.get(key)
        if isinstance(value, str):
            span.set_attribute(key, redact(value))


def temporal_interceptors(settings: Settings, tracer: trace.Tracer | None = None) -> list[Interceptor]:
    """TracingInterceptor for a client (and the worker built on it) when tracing is on."""
    if tracer is None and not settings.otel_exporter_otlp_endpoint:
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [TracingInterceptor(tracer)]
