"""Every Prometheus metric of the API and the worker, defined once; each process exports those it moves.

The API serves them at GET /metrics, the worker on WORKER_METRICS_PORT (beside the Temporal SDK's own). With
several API processes (uvicorn --workers N), set PROMETHEUS_MULTIPROC_DIR to a folder shared by them: `statex
api` empties it before they start (`start_multiprocess_dir`), each process then writes its values to files there
(prometheus-client chooses that at import, so without the variable nothing changes on the hot path), every
scrape adds them up, and a process that stops takes its live gauges out of the sum (`end_this_process`).
"""

from __future__ import annotations

import os
import shutil
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from settings import Settings

UNMATCHED_ROUTE = "unmatched"
"""The route label of a request no route matched: raw paths would give every scanner its own series."""

# --- HTTP (API process) ---------------------------------------------------------------------------
http_requests = Counter("statex_http_requests", "HTTP requests answered", ["method", "route", "status"])
http_request_duration = Histogram(
    "statex_http_request_duration_seconds",
    "Time from the request's arrival to the end of its response",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
http_requests_in_flight = Gauge(
    "statex_http_requests_in_flight", "Requests being answered now", multiprocess_mode="livesum"
)
waits_in_progress = Gauge(
    "statex_waits_in_progress", "Long polls and chat answers awaited now", ["wait"], multiprocess_mode="livesum"
)
waits_abandoned = Counter(
    "statex_waits_abandoned", "Waits (long polls, chat answers) cancelled because the client disconnected", ["wait"]
)
rate_limit_refusals = Counter("statex_rate_limit_refusals", "Requests refused with 429, by bucket", ["bucket"])

# --- business events in the API ------------------------------------------------------------------
users_registered = Counter("statex_users_registered", "Accounts created")
prototypes_submitted = Counter(
    "statex_prototypes_submitted", "Prototypes started, by the first provider of their chain", ["provider"]
)
upload_bytes = Counter("statex_upload_bytes", "Bytes of files kept (uploads and voice messages)")
webhooks_mismatched = Counter(
    "statex_webhooks_mismatched",
    "Verified webhooks ignored: their object id, amount or currency is not the payment's they name",
    ["gateway"],
)

# --- business events in the worker's activities ---------------------------------------------------
prototypes_finished = Counter(
    "statex_prototypes_finished",
    "Prototypes that reached COMPLETED or FAILED, by the provider of their last AI call",
    ["provider", "status"],
)
ai_tokens = Counter("statex_ai_tokens", "Tokens of recorded AI calls", ["provider", "direction"])
ai_cost_usd_micros = Counter("statex_ai_cost_usd_micros", "Cost of recorded AI calls, micro-dollars", ["provider"])
payments_settled = Counter(
    "statex_payments_settled", "Payments moved to a final status (COMPLETED, FAILED, REFUNDED)", ["gateway", "status"]
)
files_deleted = Counter("statex_files_deleted", "Stored files deleted by the retention workflow")
emails = Counter("statex_emails", "Emails handed to the backend, by outcome (sent, failed)", ["backend", "outcome"])


def worker_metrics_url(settings: Settings) -> str:
    return f"http://{settings.worker_metrics_host}:{settings.worker_metrics_port}/metrics"


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def start_multiprocess_dir() -> None:
    """Before the API's processes start: an empty PROMETHEUS_MULTIPROC_DIR (made if missing). A file a previous
    run left there would go on being added to every scrape: its counts twice, its gauges forever."""
    path = multiprocess_dir()
    if path is None:
        return
    folder = Path(path)
    if folder.is_dir():
        for entry in folder.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    folder.mkdir(parents=True, exist_ok=True)


def end_this_process() -> None:
    """A stopping API process: its live gauges (requests in flight, waits) leave the sum the other processes
    report; its counters stay, since what it counted did happen."""
    path = multiprocess_dir()
    if path is not None:
        multiprocess.mark_process_dead(os.getpid(), path)


def exposition() -> tuple[bytes, str]:
    """This process's metrics, or every process's when PROMETHEUS_MULTIPROC_DIR is set; and the content type."""
    path = multiprocess_dir()
    if path is None:
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=path)
    return generate_latest(registry), CONTENT_TYPE_LATEST


class _Forwarded(Collector):
    """Metrics another exporter in this process serves (the Temporal SDK's), read at each scrape."""

    def __init__(self, url: str) -> None:
        self.url = url

    def collect(self) -> Iterable[Metric]:
        try:
            with urllib.request.urlopen(self.url, timeout=5) as response:
                text = response.read().decode()
        except OSError:
            return []  # the SDK's exporter is not up yet: its metrics are missing from this scrape
        return list(text_string_to_metric_families(text))


class _Own(Collector):
    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


def serve_worker_metrics(host: str, port: int, sdk_metrics_url: str) -> WSGIServer:
    """One scrape target for the worker: its activities' metrics and the Temporal SDK's, on host:port. The
    caller shuts the returned server down."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Own())
    registry.register(_Forwarded(sdk_metrics_url))
    server, _ = start_http_server(port, addr=host, registry=registry)
    return server
