"""Sentry for the API and the worker, with secrets scrubbed before anything leaves the process.

The SDK is imported only by a process that turns it on (SENTRY_DSN): without it, it would cost every API
process some 4 MB for nothing. Code that reports an error calls `report`, which needs no import.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from observability.redaction import FILTERED, SENSITIVE_KEYS, scrub
from settings import Settings


def scrub_breadcrumb(crumb: dict[str, Any], _hint: Any = None) -> dict[str, Any]:
    """before_breadcrumb: logging breadcrumbs carry the formatted message, HTTP ones the URL."""
    return scrub(crumb)  # type: ignore[no-any-return]


def scrub_event(event: dict[str, Any], _hint: Any = None) -> dict[str, Any]:
    """before_send: the SDK's own scrubber runs first; this also walks request bodies, extras, contexts
    and breadcrumbs, and drops the raw query string and cookies."""
    request = event.get("request")
    if isinstance(request, dict):
        request.pop("cookies", None)
        if request.get("query_string"):
            request["query_string"] = FILTERED
    return scrub(event)


def report(err: BaseException) -> None:
    """Send an error to Sentry when this process turned it on; otherwise nothing (not even an import)."""
    sdk = sys.modules.get("sentry_sdk")  # imported by init_sentry; an SDK nobody imported has no client
    if sdk is not None:
        sdk.capture_exception(err)


def init_sentry(settings: Settings, *, component: str) -> bool:
    """PII stays off by leaving `send_default_pii` unset (setting it is deprecated, and its replacement,
    `data_collection`, would switch the EventScrubber off). Local variables are not sent: they arrive as
    reprs (request models, the ASGI scope with its headers, Temporal activity inputs), where a secret has
    no key for a scrubber to find."""
    if settings.sentry_dsn is None:
        return False
    import sentry_sdk
    from sentry_sdk.scrubber import EventScrubber

    sentry_sdk.init(
        dsn=settings.sentry_dsn.get_secret_value(),
        environment=settings.environment,
        server_name=component,
        include_local_variables=False,
        traces_sample_rate=settings.sentry_traces_sample_rate,
        event_scrubber=EventScrubber(denylist=sorted(SENSITIVE_KEYS), recursive=True),
        before_send=scrub_event,  # type: ignore[arg-type]
        before_send_transaction=scrub_event,  # type: ignore[arg-type]
        before_breadcrumb=scrub_breadcrumb,  # type: ignore[arg-type]
    )
    sentry_sdk.set_tag("component", component)
    logging.getLogger(__name__).info("Sentry enabled for %s", component)
    return True
