"""Logging for the API, the worker and the CLI: one setup, JSON lines in production, readable text elsewhere.

Every line carries what it is about where that is known: the request (`request_id`, `user_id`, `route`,
`status`, `duration_ms`) and the workflow (`workflow_id`). The ids come from context variables that the
request middleware (api/request_log.py) and the Temporal interceptors (log_propagation.py) set, so a module
logs with a plain `logging.getLogger(__name__)` and gets them for free.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from temporalio import activity, workflow

from observability import FILTERED, SENSITIVE_KEYS, RedactCredentials, redact
from settings import Settings

request_id: ContextVar[str | None] = ContextVar("statex_request_id", default=None)
workflow_id: ContextVar[str | None] = ContextVar("statex_workflow_id", default=None)
request_state: ContextVar[Mapping[str, Any] | None] = ContextVar("statex_request_state", default=None)
"""The request's `scope["state"]`: get_optional_user writes `user_id` there once the caller is known, and
a shared mapping (not a value) lets the lines logged after that, and the access line, read it."""

CONTEXT_FIELDS = ("request_id", "user_id", "workflow_id", "route", "method", "status", "duration_ms")

# Everything a LogRecord has of its own; any other attribute came in through `extra=`.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
_TEMPORAL_EXTRAS = ("temporal_workflow", "temporal_activity")


def email_digest(email: str) -> str:
    """An email is personal data: lines name it by a short digest, enough to correlate attempts."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()[:16]


def context_of(record: logging.LogRecord) -> dict[str, Any]:
    """The record's own `extra=` values first, then the ids of the request or workflow it was logged in."""
    fields: dict[str, Any] = {name: getattr(record, name) for name in CONTEXT_FIELDS if hasattr(record, name)}
    fields.setdefault("request_id", request_id.get())
    state = request_state.get()
    if state is not None:
        fields.setdefault("user_id", state.get("user_id"))
    temporal = next((getattr(record, key) for key in _TEMPORAL_EXTRAS if hasattr(record, key)), None)
    if isinstance(temporal, Mapping):
        fields.setdefault("workflow_id", temporal.get("workflow_id"))
    fields.setdefault("workflow_id", workflow_id.get())
    return {name: value for name, value in fields.items() if value is not None}


def _safe(key: str, value: Any) -> Any:
    """A sensitive key's value never leaves; text is redacted; mappings are walked."""
    if key.lower() in SENSITIVE_KEYS:
        return FILTERED
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {str(inner): _safe(str(inner), item) for inner, item in value.items()}
    if isinstance(value, int | float | bool) or value is None:
        return value
    return redact(str(value))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the context fields, any other `extra=`, and
    the exception. Each string is redacted on its own (redacting the finished line could cut it mid-JSON)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        line.update(context_of(record))
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and key not in line and not key.startswith("_"):
                line[key] = _safe(key, value)
        if record.exc_info:
            line["exception"] = redact(self.formatException(record.exc_info))
        if record.stack_info:
            line["stack"] = redact(self.formatStack(record.stack_info))
        return json.dumps({key: _safe(key, value) for key, value in line.items()}, default=str)


class TextFormatter(logging.Formatter):
    """For a person at a terminal: the usual line, then the context fields that apply."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        context = context_of(record)
        if not context:
            return text
        first, newline, rest = text.partition("\n")
        suffix = " ".join(f"{name}={value}" for name, value in context.items())
        return f"{first} [{suffix}]{newline}{rest}"


UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


def build_handler(log_format: str) -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(RedactCredentials())
    return handler


def configure_logging(settings: Settings) -> None:
    """The process's logging from LOG_FORMAT and LOG_LEVEL: one handler on the root logger, which uvicorn's
    loggers now reach too (their lines become JSON as well). uvicorn's access log is switched off: the
    request middleware writes one line per request with the route template, status, duration and ids, and
    never the query string (where a download link keeps its token)."""
    log_format = settings.effective_log_format
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(build_handler(log_format))
    root.setLevel(settings.log_level)
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per outgoing call says nothing new
    if log_format == "json":  # the ids are fields of their own; no need to repeat them inside the message
        workflow.logger.workflow_info_on_message = False
        activity.logger.activity_info_on_message = False
