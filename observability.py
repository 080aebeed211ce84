"""Sentry for the API and the worker, with secrets scrubbed before anything leaves the process."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import sentry_sdk
from sentry_sdk.scrubber import DEFAULT_DENYLIST, DEFAULT_PII_DENYLIST, EventScrubber
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from settings import Settings

FILTERED = "[Filtered]"
REPORT_AFTER_ATTEMPTS = 3

# Keys whose values never leave the process, wherever they appear in an event (matched lower-case).
SENSITIVE_KEYS = frozenset(
    {
        *DEFAULT_DENYLIST,
        *DEFAULT_PII_DENYLIST,
        "password",
        "new_password",
        "password_hash",
        "access_token",
        "refresh_token",
        "id_token",
        "client_secret",
        "jwt_secret",
        "api_key",
        "apikey",
        "x-api-key",
        "openai_api_key",
        "azure_openai_api_key",
        "aws_secret_access_key",
        "r2_secret_access_key",
        "stripe-signature",
        "paypal-auth-algo",
        "btcpay-sig",
        "card",
        "card_number",
        "cardnumber",
        "cvc",
        "cvv",
        "cvv2",
        "exp_month",
        "exp_year",
        "iban",
        # Outgoing-request breadcrumbs and spans keep the query string apart from the URL.
        "http.query",
        "http.fragment",
    }
)


def _scrub(value: Any) -> Any:
    """Depth-first: a sensitive key's value is replaced whatever its type; everything else is walked."""
    if isinstance(value, Mapping):
        return {
            key: FILTERED if isinstance(key, str) and key.lower() in SENSITIVE_KEYS else _scrub(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_scrub(item) for item in value]
    return value


def scrub_event(event: dict[str, Any], _hint: Any = None) -> dict[str, Any]:
    """before_send: the SDK's own scrubber runs first; this also walks request bodies, extras, contexts
    and breadcrumbs, and drops the raw query string and cookies."""
    request = event.get("request")
    if isinstance(request, dict):
        request.pop("cookies", None)
        if request.get("query_string"):
            request["query_string"] = FILTERED
    return _scrub(event)


def init_sentry(settings: Settings, *, component: str) -> bool:
    """PII stays off by leaving `send_default_pii` unset (setting it is deprecated, and its replacement,
    `data_collection`, would switch the EventScrubber off). Local variables are not sent: they arrive as
    reprs (request models, the ASGI scope with its headers, Temporal activity inputs), where a secret has
    no key for a scrubber to find."""
    if settings.sentry_dsn is None:
        return False
    sentry_sdk.init(
        dsn=settings.sentry_dsn.get_secret_value(),
        environment=settings.environment,
        server_name=component,
        include_local_variables=False,
        traces_sample_rate=settings.sentry_traces_sample_rate,
        event_scrubber=EventScrubber(denylist=sorted(SENSITIVE_KEYS), recursive=True),
        before_send=scrub_event,  # type: ignore[arg-type]
        before_send_transaction=scrub_event,  # type: ignore[arg-type]
        before_breadcrumb=lambda crumb, _hint: _scrub(crumb),
    )
    sentry_sdk.set_tag("component", component)
    logging.getLogger(__name__).info("Sentry enabled for %s", component)
    return True


class _SentryActivityInbound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        """Each activity gets its own isolation scope, as each request does in the API, so its breadcrumbs
        never ride along with another activity's error."""
        info = activity.info()
        with sentry_sdk.isolation_scope() as scope:
            scope.set_tag("temporal.activity", info.activity_type)
            scope.set_tag("temporal.workflow", info.workflow_type)
            scope.set_context(
                "temporal",
                {"workflow_id": info.workflow_id, "activity_id": info.activity_id, "attempt": info.attempt},
            )
            try:
                return await super().execute_activity(input)
            except Exception as err:
                if worth_reporting(err, info.attempt):
                    sentry_sdk.capture_exception(err)
                raise


def worth_reporting(err: BaseException, attempt: int) -> bool:
    """A failure no retry will fix, or one that has outlived a few retries: a provider's passing 429 or 503,
    which Temporal retries away, should not page anyone."""
    if isinstance(err, ApplicationError) and err.non_retryable:
        return True
    if isinstance(err, asyncio.CancelledError):
        return False
    return attempt == REPORT_AFTER_ATTEMPTS


class SentryInterceptor(Interceptor):
    """Reports activity failures (with workflow id and attempt) from the worker."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _SentryActivityInbound(next)


def sentry_worker_interceptors(settings: Settings) -> list[Interceptor]:
    return [SentryInterceptor()] if settings.sentry_dsn is not None else []
