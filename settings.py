"""The one settings object: read from the environment and `.env`, documented in `.env.example`."""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
)

_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

DEFAULT_JWT_SECRET = "change-me-development-only-secret-0123456789"
"""Good enough for `make run`; production refuses to start with it."""

SECRETS_DIR_VARIABLE = "SECRETS_DIR"
"""The environment variable naming a folder of secret files, one per setting, named after it (`jwt_secret`,
`payload_keys`, ...), as Docker and Kubernetes mount secrets: the image sets /run/secrets. Unset: no files."""


CommaList = Annotated[list[str], NoDecode]
Provider = Literal["ollama", "openai", "azure"]
ProviderList = Annotated[list[Provider], NoDecode]


DEV_CORS_ORIGINS = tuple(
    f"http://{host}:{port}" for port in (3000, 5173, 4200, 8080) for host in ("localhost", "127.0.0.1")
)
"""Next.js / CRA, Vite, Angular and Vue CLI dev servers: allowed by default outside production."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore", env_ignore_empty=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments first, then the environment, `.env`, and last the files in SECRETS_DIR (read when a Settings
        is made, so a test or a process may point it elsewhere). A variable set in the environment wins over
        its file: an operator may override one secret without touching the mounted folder."""
        folder = os.environ.get(SECRETS_DIR_VARIABLE) or None
        files = _SecretFiles(settings_cls, secrets_dir=folder) if folder else file_secret_settings
        return init_settings, env_settings, dotenv_settings, files

    environment: Literal["development", "test", "production"] = "development"
    data_dir: Path = Path("data")
    """Embedded default: SQLite database, stored files, the email outbox and Temporal's own file."""

    # Database: SQLite file unless DATABASE_URL names PostgreSQL (postgresql+psycopg://...).
    database_url: str | None = None
    database_password: SecretStr | None = None
    """The password of DATABASE_URL kept apart from it (a secret file): set, it replaces the URL's own."""
    run_migrations_on_start: bool = True
    database_pool_size: int = Field(default=20, ge=1, le=200)
    """Connections each API or worker process keeps. Requests hold one only for a short unit of work. In an API
    process on PostgreSQL half of them (rounded down) are psycopg's pool for the statements every signed-in
    request runs and single-row inserts (models/db.py), the rest SQLAlchemy's pool; the sum is this figure."""
    database_pool_overflow: int = Field(default=0, ge=0, le=200)
    """Connections opened past SQLAlchemy's pool for a moment and closed again when returned: under a steady
    load that is a new server process per burst, so by default the whole bound is kept instead."""
    database_pool_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    """How long a unit of work waits for a free connection (in either pool) before the request answers 503."""

    # HTTP API
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    cors_origins: CommaList | None = None
    """Browser origins allowed to call the API with credentials. Unset: the usual development servers in
    development and test (see DEV_CORS_ORIGINS), none in production."""
    api_behind_tls: bool = False
    """Clients reach the API over HTTPS only (directly or through a TLS proxy): answers carry HSTS."""
    api_docs_enabled: bool | None = None
    """/docs, /redoc and /openapi.json; unset means on in development and test, off in production."""
    max_json_body_bytes: int = Field(default=1024 * 1024, gt=0)
    """Largest body of any route that is not an upload or a webhook: 413 past it, the rest never read."""
    max_webhook_body_bytes: int = Field(default=1024 * 1024, gt=0)
    """Largest body of a payment gateway's webhook (they send a few kilobytes): 413 past it."""
    api_workers: int | None = Field(default=None, ge=1, le=64)
    """API processes (uvicorn workers). Unset: one per CPU core in production, one otherwise."""
    api_max_concurrency: int = Field(default=64, ge=1, le=10_000)
    """Requests in flight per API process; more answer 503 with Retry-After at once (not /health, /ready)."""
    api_shutdown_grace_seconds: int = Field(default=20, ge=0, le=3600)
    """On SIGTERM the API stops accepting connections and lets requests in flight finish for up to this long
    (uvicorn's graceful shutdown); then they are cut. Keep it below the orchestrator's grace before SIGKILL
    (Kubernetes' terminationGracePeriodSeconds, 30 s by default; compose's stop_grace_period, 10 s by default)."""

    # Temporal (dev server for `make run`; a cluster or Temporal Cloud in production)
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_task_queue: str = "statex"
    temporal_tls: bool = False
    temporal_tls_client_cert_path: Path | None = None
    temporal_tls_client_key_path: Path | None = None
    temporal_api_key: SecretStr | None = None
    temporal_ui_port: int = Field(default=8233, ge=1, le=65535)
    temporal_http_port: int = Field(default=7243, ge=1, le=65535)
    """`statex run`'s dev server: its HTTP API on 127.0.0.1 (left to chance, it takes a random port)."""
    temporal_metrics_port: int = Field(default=7244, ge=1, le=65535)
    """`statex run`'s dev server: its own Prometheus /metrics on 127.0.0.1 (left to chance, a random port)."""
    temporal_rpc_timeout_seconds: float = Field(default=5.0, gt=0)
    """How long a request waits on Temporal before answering 503, rather than hanging."""

    # Traces (OpenTelemetry over OTLP/HTTP), e.g. http://127.0.0.1:4318; unset: no tracing at all
    otel_exporter_otlp_endpoint: str | None = None

    # Workflow payloads are encrypted (AES-256-GCM) before they reach Temporal: see workflows/codec.py
    payload_keys: SecretStr | None = None
    """The key ring: `id:base64key` entries, comma-separated or a JSON list; each key 32 random bytes. Keep
    retired keys listed so older histories still decode. Unset outside production: a development key is
    generated once in DATA_DIR/payload-keys. Production refuses to start without it."""
    payload_key_id: str | None = None
    """The ring's key that encrypts new payloads; unset: the last one listed."""
    codec_operator_token: SecretStr | None = None
    """`Authorization: Bearer <token>` for POST /codec/decode and /codec/encode (the Temporal UI's and CLI's
    codec server). Unset: refused, except in development to callers on this machine (the dev server's UI)."""
    contact_key_secret: SecretStr | None = None
    """The HMAC key of `StatexContactKey`, the opaque search attribute that finds an anonymous sender's contact
    workflows for erasure. Unset: derived from JWT_SECRET. Set it before ever rotating JWT_SECRET, or erasure no
    longer finds the contact workflows keyed under the old one."""
    temporal_ui_origins: CommaList | None = None
    """Browser origins of the Temporal UI allowed to call /codec; unset: http://localhost and 127.0.0.1 on
    TEMPORAL_UI_PORT."""

    # Auth
    jwt_secret: SecretStr = SecretStr(DEFAULT_JWT_SECRET)
    jwt_algorithm: Literal["HS256", "HS384", "HS512"] = "HS256"
    jwt_issuer: str = "statex"
    access_token_minutes: int = Field(default=15, ge=1, le=24 * 60)
    refresh_token_days: int = Field(default=30, ge=1, le=365)
    bcrypt_rounds: int = Field(default=12, ge=4, le=16)
    email_verification_hours: float = Field(default=48.0, gt=0, le=24 * 30)
    """How long the link that verifies an account's address works."""
    password_reset_minutes: float = Field(default=30.0, gt=0, le=24 * 60)
    """How long a password reset code works (once: setting a password ends every code issued before)."""
    account_email_interval_seconds: float = Field(default=120.0, ge=0)
    """The least time between two emails of one kind (verification, reset, "you already have an account") to one
    account, however often they are asked for: more requests in between are answered alike and send nothing."""

    # Rate limits (per user id when authenticated, else client IP)
    rate_limit_enabled: bool = True
    rate_limit_ai: str = "2/day"
    rate_limit_upload: str = "10/day"
    rate_limit_default: str = "100/day"
    rate_limit_allow_list: CommaList | None = None
    """Client IPs never limited; unset means 127.0.0.1 in development and nobody in production."""
    redis_url: str | None = None
    """Shared limiter store for several API processes; in memory when unset."""
    rate_limit_namespace: str = "statex"

    # Error tracking
    sentry_dsn: SecretStr | None = None
    sentry_traces_sample_rate: float = Field(default=0.0, ge=0.0, le=1.0)

    # Metrics (Prometheus). Several API processes: set PROMETHEUS_MULTIPROC_DIR (see .env.example).
    metrics_enabled: bool = True
    """GET /metrics on the API."""
    metrics_token: SecretStr | None = None
    """Set: GET /metrics wants `Authorization: Bearer <token>`. Unset: open in development and tests; in
    production /metrics then refuses every caller (401), as it would hand anyone the service's internals."""
    worker_metrics_host: str = "127.0.0.1"
    worker_metrics_port: int = Field(default=9464, ge=1, le=65535)
    """The worker's scrape target: its activities' metrics and the Temporal SDK's (`temporal_*`) together."""
    worker_sdk_metrics_port: int = Field(default=9465, ge=1, le=65535)
    """Where the Temporal SDK's own exporter listens on 127.0.0.1; WORKER_METRICS_PORT serves it merged."""
    ready_worker_seen_seconds: float = Field(default=60.0, gt=0)
    """/ready answers 503 when no worker has polled the task queue within this many seconds."""
    worker_deployment_name: str = Field(default="statex", min_length=1, pattern=r"^[^.]+$")
    """Temporal Worker Deployment the worker belongs to when WORKER_BUILD_ID is set (no dot: Temporal joins
    the two as `<name>.<build id>`)."""
    worker_build_id: str | None = Field(default=None, min_length=1)
    """This worker's code version (the image tag): set, the worker polls as version
    WORKER_DEPLOYMENT_NAME.WORKER_BUILD_ID, gets work once that version is made current (or ramping), and every
    workflow moves to the current version at its next task (docs/operations.md, "Deploying new workflow
    code"). Unset: an unversioned worker, which takes every task on the queue, as `make run` and the tests want."""
    worker_shutdown_grace_seconds: float = Field(default=25.0, ge=0, le=3600)
    """On SIGTERM the worker stops polling and lets running activities finish for up to this long; those still
    running are then cancelled and retried on another worker at once. Keep it a few seconds below the
    orchestrator's grace before SIGKILL (Kubernetes' terminationGracePeriodSeconds, 30 s by default)."""

    # Logs
    log_format: Literal["json", "text"] | None = None
    """`json`: one object per line for a log pipeline; unset: json in production, readable text elsewhere."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    access_log_enabled: bool = True
    """One line per API request (method, route template, status, duration, ids); a served API writes its lines
    from a thread of its own, never from the event loop. Off: the metrics still count every request."""

    # Email: a local outbox folder by default, Amazon SES v2 in production
    email_backend: Literal["outbox", "ses"] = "outbox"
    email_from: str = "Statex <no-reply@statex.local>"
    email_team_address: str = "team@statex.local"
    aws_region: str = "eu-west-1"
    aws_access_key_id: SecretStr | None = None
    aws_secret_access_key: SecretStr | None = None
    ses_endpoint_url: str | None = None
    ses_configuration_set: str | None = None

    # Files: a local folder by default, Cloudflare R2 in production; every file is deleted after its lifetime
    storage_backend: Literal["local", "r2"] = "local"
    file_retention_hours: float = Field(default=24.0, gt=0)
    file_max_bytes: int = Field(default=25 * 1024 * 1024, gt=0)
    # Erasure: payment records are kept, anonymised, for the accounting period (bookkeeping law, e.g. 10 years)
    erasure_keep_payments_years: int = Field(default=10, ge=0)
    erasure_cancel_grace_seconds: float = Field(default=60.0, ge=0)
    file_allowed_types: CommaList = Field(
        default_factory=lambda: [
            "image/png",
            "image/jpeg",
            "image/gif",
            "image/webp",
            "application/pdf",
            "application/zip",
            "text/plain",
            "text/markdown",
            "text/csv",
            "application/json",
        ]
    )
    upload_idle_seconds: float = Field(default=30.0, gt=0)
    """An upload (file or voice) that sends nothing for this long is cut off with 408; nothing is kept."""
    uploads_per_user_at_once: int = Field(default=2, ge=1)
    """Uploads (file or voice) one user may have in flight in one API process; one more gets 429."""
    file_download_url_seconds: int = Field(default=900, gt=0, le=7 * 24 * 3600)
    """Lifetime of a presigned R2 download link (never past the file's own deletion time)."""
    r2_endpoint_url: str | None = None
    r2_access_key_id: SecretStr | None = None
    r2_secret_access_key: SecretStr | None = None
    r2_bucket: str | None = None
    r2_eu_endpoint_url: str | None = None
    """An EU-jurisdiction R2 endpoint (`https://<account>.eu.r2.cloudflarestorage.com`): with R2_EU_BUCKET, where
    EU_COMPLIANCE users' files are kept, so they never sit outside the EU."""
    r2_eu_bucket: str | None = None
    r2_eu_access_key_id: SecretStr | None = None
    """Unset: R2_ACCESS_KEY_ID (one Cloudflare account token may reach both buckets)."""
    r2_eu_secret_access_key: SecretStr | None = None

    # AI providers. A provider serves only once configured (Ollama: a host; OpenAI, Azure: a key); with none
    # configured, the offline template tier answers, clearly labelled. Prices: models/ai_prices.toml.
    ollama_host: str | None = None
    ollama_model: str = "llama3.2"
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    """Unset: api.openai.com. Set for a compatible gateway (and for the tests' local server)."""
    openai_chat_model: str = "gpt-4o-mini"
    openai_transcription_model: str = "whisper-1"
    azure_openai_endpoint: str | None = None
    azure_openai_api_key: SecretStr | None = None
    azure_openai_api_version: str = "2024-10-21"
    azure_openai_chat_deployment: str = "gpt-4o-mini"
    azure_openai_chat_model: str = "gpt-4o-mini"
    """The model behind the chat deployment: its name in the price table."""
    azure_openai_transcription_deployment: str | None = None
    azure_openai_transcription_model: str = "whisper"
    """The model behind the transcription deployment: its name in the price table."""

    # AI providers: who may serve whom, how long a call may take, how often Temporal retries it
    ai_eu_resident_providers: ProviderList = Field(default_factory=lambda: list[Provider](["azure"]))
    """Providers that keep data in the EU: the only ones EU_COMPLIANCE users are served by."""
    ai_fallback_order: ProviderList = Field(default_factory=lambda: list[Provider](["openai", "azure", "ollama"]))
    """Order in which configured providers are tried when the one before stays down after its retries."""
    ai_request_timeout_seconds: float = Field(default=60.0, gt=0)
    ai_transcription_timeout_seconds: float = Field(default=300.0, gt=0)
    ai_retry_initial_interval_seconds: float = Field(default=1.0, gt=0)
    ai_retry_maximum_interval_seconds: float = Field(default=30.0, gt=0)
    ai_retry_maximum_attempts: int = Field(default=4, ge=1, le=20)
    """Attempts per provider before the next one in the fallback order is tried."""
    ai_chat_wait_seconds: float = Field(default=20.0, gt=0)
    """How long POST /api/ai/chat waits for the answer before it answers 202 with a status URL."""
    ai_price_table: Path | None = None
    """Price overrides of your own (the format of models/ai_prices.toml); unset: that shipped file. Chat models
    without a row there are priced by genai-prices."""

    # Prototypes and voice input: POST /api/ai/prototype and /api/ai/voice run PrototypeWorkflow
    public_api_url: str = ""
    """Where customers reach this API: emailed links, `download_link`s and the Temporal UI's codec endpoint
    start with it. Unset: this API itself, http://API_HOST:API_PORT (127.0.0.1 for a wildcard host)."""
    prototype_fix_rounds: int = Field(default=2, ge=0, le=5)
    """How often code that fails its sandbox checks goes back to the code agent with the errors."""
    sandbox_bwrap: str = "bwrap"
    """bubblewrap, which isolates generated code while it is verified: a name on PATH or a path. Where it is
    missing or cannot make namespaces, nothing is run and prototypes complete "not verified: sandbox unavailable"
    (the worker logs why at startup, GET /api/capabilities says so)."""
    previews_enabled: bool = True
    """After its checks pass, a prototype's app is started in the sandbox and its main page shot by a headless
    browser (PREVIEW.png). False: the app is still started and fetched, but no picture is taken."""
    preview_browser: str = "/usr/bin/chromium"
    """The headless browser that shoots the page: Debian's chromium (`apt-get install chromium`). Missing: the
    prototype completes without a picture, and says why."""
    prototype_approval_days: float = Field(default=7, gt=0)
    """A prototype submitted with review_requirements and not approved within this many days is cancelled."""
    prototype_events_max_seconds: float = Field(default=600.0, gt=0)
    """How long one GET /api/prototypes/{id}/events stays open; then the client reconnects with Last-Event-ID."""
    prototype_events_keepalive_seconds: float = Field(default=15.0, gt=0)
    """While no event comes (a long step), the stream sends an SSE comment this often: proxies cut idle streams."""
    prototype_events_per_user: int = Field(default=8, ge=1, le=1000)
    """Event streams one account may hold open in one API process; the next is a 429 with Retry-After."""
    prototype_events_per_process: int = Field(default=1000, ge=1, le=100_000)
    """Event streams one API process holds open in all; the next is a 429 with Retry-After. Open streams are not
    requests in flight (API_MAX_CONCURRENCY): this bound is theirs."""
    prototype_events_poll_seconds: float = Field(default=0.5, gt=0, le=60)
    """How often a prototype with open streams has its workflow asked for new events: once per prototype and
    process, however many streams follow it."""
    prototype_events_session_check_seconds: float = Field(default=3.0, gt=0, le=60)
    """How often open streams have their sessions checked: a stream ends within this long of a logout or a
    revoked refresh family."""
    prototype_events_token_seconds: int = Field(default=300, ge=10, le=3600)
    """How long the `events_url` of a status answer opens its stream (EventSource cannot send an Authorization
    header, so the URL carries a token for that one stream). A stream once open stays open; a reconnect after
    this gets 401, and a fresh status answer has a fresh URL."""
    voice_max_bytes: int = Field(default=25 * 1024 * 1024, gt=0)
    """Larger voice messages get 413 (25 MB is also the most Whisper takes)."""
    voice_allowed_types: CommaList = Field(
        default_factory=lambda: [
            "audio/mpeg",
            "audio/wav",
            "audio/x-wav",
            "audio/ogg",
            "audio/webm",
            "audio/flac",
            "audio/mp4",
            "audio/x-m4a",
        ]
    )
    """Audio types accepted (checked against the bytes too); Whisper reads each of them."""

    # Payments: a gateway takes checkouts once configured. Prices come from models/catalogue.toml, never a request.
    payment_return_url: str = "http://localhost:3000/payment/{payment_id}"
    """Where the gateway's page sends the customer back; `{payment_id}` is filled in."""
    payment_cancel_url: str = "http://localhost:3000/payment/{payment_id}/cancelled"
    payment_checkout_wait_seconds: float = Field(default=15.0, gt=0)
    """How long POST /api/payments/checkout waits for the gateway before answering 202 without `next_action`."""
    payment_poll_seconds: int = Field(default=300, ge=1)
    """When no webhook comes, the workflow asks the gateway for the status this often (webhooks get lost)."""
    payment_refund_window_days: int = Field(default=14, ge=0)
    """A customer may refund a completed payment for this many days (POST .../refund); 0 turns that off. Fixed
    per payment at checkout (CheckoutOrder.refund_window)."""
    payment_watch_days: int = Field(default=60, ge=1)
    """How long a completed payment's workflow listens for refunds made in the gateway's own dashboard."""
    stripe_secret_key: SecretStr | None = None
    stripe_webhook_secret: SecretStr | None = None
    stripe_api_base: str | None = None
    """Unset: api.stripe.com. The tests point it at localstripe."""
    stripe_webhook_tolerance_seconds: int = Field(default=300, ge=1)
    stripe_expiry_minutes: int = Field(default=60, ge=1)
    local_stripe_port: int = Field(default=8420, ge=1, le=65535)
    """`statex run` with no STRIPE_SECRET_KEY: the loopback port of the local Stripe emulator it starts."""
    paypal_client_id: str | None = None
    paypal_client_secret: SecretStr | None = None
    paypal_api_base: str = "https://api-m.sandbox.paypal.com"
    paypal_webhook_id: str | None = None
    paypal_brand_name: str = "Statex"
    paypal_expiry_minutes: int = Field(default=180, ge=1)
    btcpay_url: str | None = None
    btcpay_api_key: SecretStr | None = None
    btcpay_store_id: str | None = None
    btcpay_webhook_secret: SecretStr | None = None
    btcpay_currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    """The store's pricing currency; the catalogue must price every tier in it for crypto checkouts."""
    btcpay_webhook_tolerance_seconds: int = Field(default=300, ge=1)
    btcpay_expiry_minutes: int = Field(default=60, ge=1)
    comgate_merchant: str | None = None
    comgate_secret: SecretStr | None = None
    comgate_api_base: str = "https://payments.comgate.cz"
    comgate_test: bool = True
    """Comgate test payments; set false in production."""
    comgate_expiry_minutes: int = Field(default=60, ge=1)

    @field_validator(
        "cors_origins",
        "rate_limit_allow_list",
        "file_allowed_types",
        "voice_allowed_types",
        "ai_eu_resident_providers",
        "ai_fallback_order",
        "temporal_ui_origins",
        mode="before",
    )
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        """Accept `a,b,c` in the environment as well as a JSON list."""
        if isinstance(value, str):
            stripped = value.strip()
            if stripped.startswith("["):
                return json.loads(stripped)
            return [item.strip() for item in stripped.split(",") if item.strip()]
        return value

    @field_validator("sentry_dsn", "codec_operator_token", "metrics_token", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        """`SENTRY_DSN=` (as a compose file passes an unset variable) means no Sentry: an empty DSN would still
        patch every request with Sentry's integrations, for nothing. A blank token is no token (not an empty
        one that `Authorization: Bearer` with nothing after it would match)."""
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _links_follow_the_api(self) -> Settings:
        """An API moved to another port (API_PORT) keeps its links working without a second setting."""
        if not self.public_api_url:
            self.public_api_url = self.api_base_url
        return self

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.environment == "production":
            secret = self.jwt_secret.get_secret_value()
            if secret == DEFAULT_JWT_SECRET or len(secret) < 32:
                raise ValueError("JWT_SECRET must be set to a random value of at least 32 characters in production")
            if self.payload_keys is None:
                raise ValueError("PAYLOAD_KEYS must be set in production: workflow payloads are encrypted with them")
        return self

    @property
    def effective_database_url(self) -> str:
        """The async SQLAlchemy URL: PostgreSQL through psycopg 3, else a SQLite file in the data folder."""
        if self.database_url:
            url = self.database_url
            if self.database_password is not None:
                url = _with_password(url, self.database_password.get_secret_value())
            for prefix in ("postgresql://", "postgres://"):
                if url.startswith(prefix):
                    return "postgresql+psycopg://" + url.removeprefix(prefix)
            return url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'statex.sqlite3').resolve()}"

    @property
    def api_base_url(self) -> str:
        """Where a client on this machine reaches the API: a wildcard host (every interface) via loopback."""
        host = "127.0.0.1" if self.api_host in {"0.0.0.0", "::", ""} else self.api_host
        if ":" in host:  # an IPv6 address
            host = f"[{host}]"
        return f"http://{host}:{self.api_port}"

    @property
    def outbox_dir(self) -> Path:
        return self.data_dir / "outbox"

    @property
    def files_dir(self) -> Path:
        return self.data_dir / "files"

    @property
    def effective_allow_list(self) -> frozenset[str]:
        if self.rate_limit_allow_list is not None:
            return frozenset(self.rate_limit_allow_list)
        return frozenset({"127.0.0.1", "::1"}) if self.environment == "development" else frozenset()

    @property
    def effective_cors_origins(self) -> list[str]:
        if self.cors_origins is not None:
            return list(self.cors_origins)
        return [] if self.is_production else list(DEV_CORS_ORIGINS)

    @property
    def effective_temporal_ui_origins(self) -> list[str]:
        if self.temporal_ui_origins is not None:
            return list(self.temporal_ui_origins)
        return [f"http://{host}:{self.temporal_ui_port}" for host in ("localhost", "127.0.0.1")]

    @property
    def docs_enabled(self) -> bool:
        return self.api_docs_enabled if self.api_docs_enabled is not None else not self.is_production

    @property
    def effective_log_format(self) -> Literal["json", "text"]:
        return self.log_format or ("json" if self.is_production else "text")

    @property
    def effective_api_workers(self) -> int:
        if self.api_workers is not None:
            return self.api_workers
        return (os.cpu_count() or 1) if self.is_production else 1

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    @property
    def stripe_is_emulated(self) -> bool:
        """Stripe on this machine's loopback is an emulator (devstack/local_stripe.py), not api.stripe.com."""
        return bool(self.stripe_api_base) and urlsplit(self.stripe_api_base).hostname in _LOOPBACK_HOSTS


class _SecretFiles(SecretsSettingsSource):
    """An empty file is no value, as an empty variable is (ENV_IGNORE_EMPTY): compose wants every secret it
    mounts to exist, so an optional one (a Stripe key) may be an empty file."""

    def __call__(self) -> dict[str, Any]:
        return {name: value for name, value in super().__call__().items() if value != ""}


def _with_password(url: str, password: str) -> str:
    """`url` with its user's password replaced (or added), quoted as a URL's userinfo must be."""
    parts = urlsplit(url)
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return parts._replace(netloc=f"{user}:{quote(password, safe='')}@{host}").geturl()


@lru_cache
def get_settings() -> Settings:
    return Settings()
