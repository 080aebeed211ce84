"""The Temporal worker: builds the clients from settings, registers every workflow and activity, runs."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker, WorkerDeploymentConfig

from activities.account_email import AccountEmailActivities
from activities.ai.azure import AzureActivities
from activities.ai.offline import OfflineActivities
from activities.ai.ollama import OllamaActivities
from activities.ai.openai import OpenAIActivities
from activities.ai.openai_compatible import AudioStore
from activities.ai.records import AIRecordActivities
from activities.contact import ContactActivities
from activities.email import EmailActivities, Mailer, build_mailer
from activities.erasure import ErasureActivities
from activities.export import ExportActivities
from activities.liveness import HeartbeatWhileRunning
from activities.packaging import PackagingActivities
from activities.payments import checkout_activities
from activities.records import RecordActivities
from activities.revisions import RevisionActivities
from activities.sandbox import SandboxActivities
from activities.storage import Storage, StorageActivities, build_storage
from models.ai_prices import load_prices
from models.db import engine_for, migrate
from models.enums import AIProvider
from observability import metrics
from observability.interceptors import RequestIdFromHeaders, sentry_worker_interceptors
from observability.logs import configure_logging
from observability.metrics import worker_metrics_url
from observability.sentry import init_sentry
from observability.tracing import configure_tracing
from services.data_folder import close_data_dir_or_exit
from settings import Settings, get_settings
from workflows.account_email import AccountEmailWorkflow
from workflows.ai import Routing
from workflows.chat import ChatWorkflow
from workflows.checkout import CheckoutWorkflow
from workflows.client import connect
from workflows.contact import ContactWorkflow
from workflows.erasure import ErasureWorkflow, KeptPaymentsWorkflow
from workflows.export import ExportWorkflow
from workflows.prototype import PrototypeWorkflow
from workflows.retention import FileRetentionWorkflow
from workflows.revision import PrototypeRevisionWorkflow

log = logging.getLogger(__name__)

WORKFLOWS: Sequence[type] = (
    ContactWorkflow,
    FileRetentionWorkflow,
    ChatWorkflow,
    CheckoutWorkflow,
    PrototypeWorkflow,
    PrototypeRevisionWorkflow,
    ExportWorkflow,
    ErasureWorkflow,
    KeptPaymentsWorkflow,
    AccountEmailWorkflow,
)


def activities_for(
    settings: Settings,
    engine: AsyncEngine,
    clients: AsyncExitStack,
    mailer: Mailer | None = None,
    temporal: Client | None = None,
) -> list[Any]:
    """Every activity, each outside system's client built once here and reused by every call; `clients` closes
    them. A `mailer` given by the caller stays the caller's to close. Erasure's activities need `temporal` (to
    stop and delete the user's workflows): without it they are left out."""
    if mailer is None:
        mailer = build_mailer(settings)
        clients.push_async_callback(mailer.aclose)
    files = build_storage(settings)
    clients.push_async_callback(files.aclose)
    email = EmailActivities(mailer, engine, files)
    records = RecordActivities(engine)
    storage = StorageActivities(files)
    revisions = RevisionActivities(engine)
    return [
        email.send_email,
        email.send_user_email,
        AccountEmailActivities(email, engine, settings).send_account_email,
        ContactActivities(email, engine).send_contact_email,
        records.mark_contact_notified,
        records.mark_contact_failed,
        records.mark_file_deleted,
        records.record_prototype_milestone,
        revisions.read_revision_base,
        revisions.record_revision_milestone,
        storage.delete_object,
        PackagingActivities(files, engine, settings).package_prototype,
        SandboxActivities(
            bwrap=settings.sandbox_bwrap, previews=settings.previews_enabled, browser=settings.preview_browser
        ).verify_code,
        ExportActivities(files, engine, settings).package_export,
        *(erasure_activities(temporal, files, engine, settings) if temporal is not None else []),
        *ai_activities(settings, engine, files, clients),
        *checkout_activities(settings, engine, clients),
    ]


def erasure_activities(temporal: Client, files: Storage, engine: AsyncEngine, settings: Settings) -> list[Any]:
    erasure = ErasureActivities(temporal, files, engine, settings)
    return [
        erasure.read_erasure_subject,
        erasure.revoke_all_sessions,
        erasure.stop_user_workflows,
        erasure.delete_stored_objects,
        erasure.erase_rows,
        erasure.purge_outbox,
        erasure.forget_recipient,
        erasure.delete_user_histories,
        erasure.purge_kept_payments,
    ]


def ai_activities(settings: Settings, engine: AsyncEngine, audio: AudioStore, clients: AsyncExitStack) -> list[Any]:
    """A client for each configured provider (a model without a price stops the worker here, before any
    call), closed with `clients`; the offline template is always there."""
    prices = load_prices(settings.ai_price_table)
    configured = Routing.from_settings(settings).configured
    registered: list[Any] = [OfflineActivities().chat, AIRecordActivities(engine).record_ai_call]
    if AIProvider.OLLAMA in configured:
        ollama = OllamaActivities(settings, prices)
        clients.push_async_callback(ollama.client.close)
        registered.append(ollama.chat)
    if AIProvider.OPENAI in configured:
        openai = OpenAIActivities(settings, prices, audio)
        clients.push_async_callback(openai.client.close)
        registered += [openai.chat, openai.transcribe]
    if AIProvider.AZURE in configured:
        azure = AzureActivities(settings, prices, audio)
        clients.push_async_callback(azure.client.close)
        registered += [azure.chat, azure.transcribe]
    return registered


def deployment_config(settings: Settings) -> WorkerDeploymentConfig | None:
    """With WORKER_BUILD_ID, the worker is version WORKER_DEPLOYMENT_NAME.WORKER_BUILD_ID of a Worker
    Deployment, and every workflow type is AUTO_UPGRADE: a run moves to the version made current at its next
    workflow task, so changes still go through `workflow.patched` and the replay tests (docs/architecture.md,
    "Versioning behavior of each workflow type", says why none is PINNED). Without a build id: unversioned."""
    if settings.worker_build_id is None:
        return None
    return WorkerDeploymentConfig(
        version=WorkerDeploymentVersion(settings.worker_deployment_name, settings.worker_build_id),
        use_worker_versioning=True,
        default_versioning_behavior=VersioningBehavior.AUTO_UPGRADE,
    )


@asynccontextmanager
async def build_worker(
    client: Client, settings: Settings, engine: AsyncEngine, *, mailer: Mailer | None = None, **options: Any
) -> AsyncIterator[Worker]:
    """The running worker: on exit it finishes its running tasks and stops, then closes the clients its
    activities used. `mailer` replaces the one settings choose (tests wrap it to count or stall deliveries);
    `options` go to the Worker as they are."""
    async with AsyncExitStack() as clients:
        worker = Worker(
            client,
            task_queue=settings.temporal_task_queue,
            workflows=list(WORKFLOWS),
            activities=activities_for(settings, engine, clients, mailer, client),
            interceptors=[RequestIdFromHeaders(), HeartbeatWhileRunning(), *sentry_worker_interceptors(settings)],
            deployment_config=deployment_config(settings),
            **options,
        )
        async with worker:
            yield worker


def metrics_runtime(sdk_metrics_port: int) -> Runtime:
    """A Temporal runtime whose SDK metrics (workflow task and activity latency, failures, sticky cache, pollers)
    Prometheus can read at 127.0.0.1:<port>. One per process: its exporter binds the port for good."""
    exporter = PrometheusConfig(bind_address=f"127.0.0.1:{sdk_metrics_port}", durations_as_seconds=True)
    return Runtime(telemetry=TelemetryConfig(metrics=exporter))


async def run(settings: Settings) -> None:
    init_sentry(settings, component="worker")
    engine = engine_for(settings)  # DATABASE_POOL_SIZE, as the setting says, not the engine's default
    if settings.run_migrations_on_start:
        await migrate(engine)
    client = await connect(settings, runtime=metrics_runtime(settings.worker_sdk_metrics_port))
    exporter = metrics.serve_worker_metrics(
        settings.worker_metrics_host,
        settings.worker_metrics_port,
        f"http://127.0.0.1:{settings.worker_sdk_metrics_port}/metrics",
    )
    log.info("worker metrics at %s", worker_metrics_url(settings))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    grace = timedelta(seconds=settings.worker_shutdown_grace_seconds)
    try:
        # On exit (SIGTERM, SIGINT): stop polling, give running activities `grace` to finish, cancel the rest
        # (Temporal retries them on another worker at once), then return: the process exits 0.
        async with build_worker(client, settings, engine, graceful_shutdown_timeout=grace):
            log.info(
                "worker polling task queue %r as %s",
                settings.temporal_task_queue,
                f"version {settings.worker_deployment_name}.{settings.worker_build_id}"
                if settings.worker_build_id is not None
                else "an unversioned worker",
            )
            await stop.wait()
            log.info("worker stopping: no more polling; running activities have %g s to finish", grace.total_seconds())
        log.info("worker stopped")
    finally:
        exporter.shutdown()
        await engine.dispose()


def main() -> None:
    settings = get_settings()
    close_data_dir_or_exit(settings)  # first: umask 077, DATA_DIR owner-only, before anything writes there
    configure_logging(settings)
    provider = configure_tracing(settings, "worker")
    try:
        asyncio.run(run(settings))
    finally:
        if provider is not None:
            provider.shutdown()  # flush the last spans


if __name__ == "__main__":
    main()
