"""Prometheus metrics: the API's /metrics after real traffic, the worker's endpoint with the Temporal SDK's metrics,
and several API processes adding up. Metrics are process-global, so each test compares values before and after."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from ai.support import calls_of, finished, service, sign_in
from helpers import PNG, bearer, eventually, serve, upload
from payload_keys import CONVERTER
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from observability import metrics
from settings import Settings
from worker import build_worker, metrics_runtime

CONTACT = {"name": "Ada Lovelace", "email": "ada@example.com", "message": "I have an idea for an app."}
ROOT = Path(__file__).resolve().parents[2]

Labels = frozenset[tuple[str, str]]


def samples(text: str) -> Iterator[Sample]:
    for family in text_string_to_metric_families(text):
        yield from family.samples


def values(text: str) -> dict[tuple[str, Labels], float]:
    return {(sample.name, frozenset(sample.labels.items())): sample.value for sample in samples(text)}


def value(scraped: dict[tuple[str, Labels], float], name: str, **labels: str) -> float:
    return scraped.get((name, frozenset(labels.items())), 0.0)


async def scrape(api: httpx.AsyncClient) -> dict[tuple[str, Labels], float]:
    response = await api.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return values(response.text)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_metrics_count_requests_by_route_template_and_what_happened(
    temporal: Client, engine: AsyncEngine, settings: Settings
) -> None:
    async with service(temporal, engine, settings) as api:
        before = await scrape(api)

        assert (await api.post("/api/contact", json=CONTACT)).status_code == 202
        account = await sign_in(api, engine)
        uploaded = await upload(api, account["access_token"], PNG)
        assert uploaded.status_code == 201, uploaded.text
        file_id = uploaded.json()["fileId"]
        assert (await api.delete(f"/api/files/{file_id}", headers=bearer(account["access_token"]))).status_code == 200
        idea = {"idea": "A climbing gym booking app"}
        submitted = await api.post("/api/ai/prototype", json=idea, headers=account["headers"])
        assert submitted.status_code == 202, submitted.text
        prototype_id = submitted.json()["prototype_id"]
        assert (await finished(api, temporal, account, prototype_id))["status"] == "COMPLETED"
        assert (await api.get("/no/such/path")).status_code == 404
        # The contact's to the team and to the sender, the prototype's, and the new account's verification (sent
        # after registration's answer, so it may come last).
        emails_sent = 4
        sent = {"backend": "outbox", "outcome": "sent"}

        async def everything_counted() -> dict[tuple[str, Labels], float] | None:
            scraped = await scrape(api)
            deleted = value(scraped, "statex_files_deleted_total") - value(before, "statex_files_deleted_total")
            emailed = value(scraped, "statex_emails_total", **sent) - value(before, "statex_emails_total", **sent)
            return scraped if deleted == 1 and emailed == emails_sent else None

        after = await eventually(everything_counted, what="the retention deletion and every email")
        text = (await api.get("/metrics")).text

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    # Requests: by route template, never a raw id; an unmatched path under one fixed label.
    assert moved("statex_http_requests_total", method="POST", route="/api/contact", status="202") == 1
    assert moved("statex_http_requests_total", method="POST", route="/api/files/upload", status="201") == 1
    assert moved("statex_http_requests_total", method="DELETE", route="/api/files/{file_id}", status="200") == 1
    assert moved("statex_http_requests_total", method="POST", route="/api/ai/prototype", status="202") == 1
    assert moved("statex_http_requests_total", method="GET", route="/api/prototypes/{prototype_id}", status="200") >= 1
    assert moved("statex_http_requests_total", method="GET", route="unmatched", status="404") == 1
    assert moved("statex_http_request_duration_seconds_count", method="POST", route="/api/files/upload") == 1
    upload_route = {"method": "POST", "route": "/api/files/upload"}
    assert moved("statex_http_request_duration_seconds_bucket", **upload_route, le="+Inf") == 1
    assert value(after, "statex_http_requests_in_flight") == 1  # the scrape itself
    for raw in (file_id, prototype_id, account["user"]["id"], "/no/such/path"):
        assert raw not in text

    # Business counters: moved by exactly what happened.
    assert moved("statex_users_registered_total") == 1
    assert moved("statex_upload_bytes_total") == len(PNG)
    assert moved("statex_files_deleted_total") == 1
    assert moved("statex_prototypes_submitted_total", provider="offline") == 1
    assert moved("statex_prototypes_finished_total", provider="offline", status="COMPLETED") == 1
    calls = await calls_of(engine, prototype_id)
    tokens_in, tokens_out = sum(c.input_tokens for c in calls), sum(c.output_tokens for c in calls)
    assert moved("statex_ai_tokens_total", provider="offline", direction="input") == tokens_in
    assert moved("statex_ai_tokens_total", provider="offline", direction="output") == tokens_out
    assert moved("statex_ai_cost_usd_micros_total", provider="offline") == sum(c.cost_usd_micros for c in calls)
    assert moved("statex_emails_total", backend="outbox", outcome="sent") == emails_sent
    assert moved("statex_emails_total", backend="outbox", outcome="failed") == 0


async def test_metrics_can_require_a_bearer_token(settings: Settings, temporal: Client) -> None:
    protected = settings.model_copy(update={"metrics_token": SecretStr("s3cret-metrics-token")})
    app = create_app(protected, temporal=temporal)
    async with serve(app) as api:
        assert (await api.get("/metrics")).status_code == 401
        assert (await api.get("/metrics", headers=bearer("wrong"))).status_code == 401
        assert (await api.get("/metrics", headers=bearer("s3cret-metrics-token"))).status_code == 200
    async with serve(create_app(settings.model_copy(update={"metrics_enabled": False}), temporal=temporal)) as api:
        assert (await api.get("/metrics")).status_code == 404


async def test_in_production_metrics_need_their_token_by_default(
    settings: Settings, temporal: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/metrics in production answers only with METRICS_TOKEN: without a token it refuses every caller; a blank
    METRICS_TOKEN (a compose file's unset variable) is no token at all."""
    monkeypatch.setenv("METRICS_TOKEN", "")
    assert Settings(_env_file=None).metrics_token is None  # type: ignore[call-arg]
    production = settings.model_copy(update={"environment": "production"})
    async with serve(create_app(production, temporal=temporal)) as api:
        for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": "Bearer "}, bearer("anything")):
            assert (await api.get("/metrics", headers=headers)).status_code == 401, headers
    with_token = production.model_copy(update={"metrics_token": SecretStr("s3cret-metrics-token")})
    async with serve(create_app(with_token, temporal=temporal)) as api:
        assert (await api.get("/metrics")).status_code == 401
        assert (await api.get("/metrics", headers=bearer("s3cret-metrics-token"))).status_code == 200


async def test_the_worker_endpoint_serves_the_temporal_sdks_metrics_and_its_own(
    temporal_env: WorkflowEnvironment, engine: AsyncEngine, settings: Settings
) -> None:
    sdk_port, worker_port = free_port(), free_port()
    client = await Client.connect(
        temporal_env.client.service_client.config.target_host,
        namespace=temporal_env.client.namespace,
        data_converter=CONVERTER,
        runtime=metrics_runtime(sdk_port),  # a Runtime of its own: its exporter holds the port for the process
    )
    exporter = metrics.serve_worker_metrics("127.0.0.1", worker_port, f"http://127.0.0.1:{sdk_port}/metrics")
    try:
        async with build_worker(client, settings, engine), serve(create_app(settings, temporal=client)) as api:
            assert (await api.post("/api/contact", json=CONTACT)).status_code == 202
            async with httpx.AsyncClient() as http:

                async def scraped_after_the_workflow() -> str | None:
                    text = (await http.get(f"http://127.0.0.1:{worker_port}/metrics")).text
                    done = "temporal_workflow_completed" in text and 'outcome="sent"' in text
                    return text if done else None

                text = await eventually(scraped_after_the_workflow, what="the workflow's metrics")
    finally:
        exporter.shutdown()
    names = {sample.name for sample in samples(text)}
    assert any(name.startswith("temporal_activity_execution_latency") for name in names), sorted(names)
    assert any(name.startswith("temporal_workflow_task") for name in names), sorted(names)
    assert "statex_emails_total" in names


async def test_the_docs_and_the_openapi_document_have_route_labels_of_their_own(api: httpx.AsyncClient) -> None:
    before = await scrape(api)
    for path in ("/docs", "/openapi.json", "/docs-assets/swagger-ui.css", "/docs-assets/swagger-ui-bundle.js"):
        assert (await api.get(path)).status_code == 200, path
    assert (await api.get("/docs-assets/no-such-file.js")).status_code == 404
    after = await scrape(api)

    def moved(route: str, status: str = "200") -> float:
        labels = {"method": "GET", "route": route, "status": status}
        return value(after, "statex_http_requests_total", **labels) - value(
            before, "statex_http_requests_total", **labels
        )

    assert moved("/docs") == 1
    assert moved("/openapi.json") == 1
    assert moved("/docs-assets") == 2  # the mount, not each file: a bounded set of labels
    assert moved("/docs-assets", "404") == 1
    assert moved("unmatched") == moved("unmatched", "404") == 0
    assert "swagger-ui.css" not in (await api.get("/metrics")).text
