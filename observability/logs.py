"""Logging for the API, the worker and the CLI: one setup, JSON lines in production, readable text elsewhere.

Every line carries what it is about where that is known: the request (`request_id`, `user_id`, `route`,
`status`, `duration_ms`) and the workflow (`workflow_id`). The ids come from context variables that the
request edge (api/edge.py) and the worker's interceptors (observability/interceptors.py) set, so a module
logs with a plain `logging.getLogger(__name__)` and gets them for free.
"""

from __future__ import annotations

import atexit
import hashlib
import io
import json
import logging
import sys
import time
from collections.abc import Mapping
from contextlib import suppress
from contextvars import ContextVar
from datetime import UTC, datetime
from logging.handlers import QueueHandler, QueueListener
from queue import Empty, SimpleQueue
from typing import Any, TextIO, cast

from temporalio import activity, workflow

from observability.redaction import FILTERED, SENSITIVE_KEYS, RedactCredentials, redact
from settings import Settings

request_id: ContextVar[str | None] = ContextVar("statex_request_id", default=None)
workflow_id: ContextVar[str | None] = ContextVar("statex_workflow_id", default=None)
request_state: ContextVar[dict[str, Any] | None] = ContextVar("statex_request_state", default=None)
"""The request's `scope["state"]`: get_optional_user writes `user_id` there once the caller is known, and
a shared mapping (not a value) lets the lines logged after that, and the access line, read it."""

CONTEXT_FIELDS = ("request_id", "user_id", "workflow_id", "route", "method", "status", "duration_ms")

# Everything a LogRecord has of its own; any other attribute came in through `extra=`.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
_DROPPED_EXTRAS = frozenset({"color_message"})
"""Uvicorn's `extra=`: its message again, with ANSI colour codes for its own terminal formatter (noise in JSON)."""
_NOT_EXTRAS = _RECORD_ATTRIBUTES | _DROPPED_EXTRAS
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
    if value is None or isinstance(value, int | float):  # before Mapping, whose isinstance check is slow
        return value
    if isinstance(value, Mapping):
        return {str(inner): _safe(str(inner), item) for inner, item in value.items()}
    return redact(str(value))


def _timestamp(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")


_REDACTED_ELSEWHERE = frozenset({"time", "level", "logger", "message"})
"""Written by the formatter itself, or (the message) redacted by the handler's RedactCredentials filter."""
_encode = json.JSONEncoder(default=str).encode


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the context fields, any other `extra=`, and
    the exception. Each string is redacted on its own (redacting the finished line could cut it mid-JSON)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(context_of(record))
        for key, value in vars(record).items():
            if key not in _NOT_EXTRAS and key not in line and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return _encode({key: value if key in _REDACTED_ELSEWHERE else _safe(key, value) for key, value in line.items()})


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


def build_handler(log_format: str) -> logging.StreamHandler[TextIO]:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(RedactCredentials())
    return handler


ACCESS_LOGGER = "statex.access"
access_log = logging.getLogger(ACCESS_LOGGER)
ACCESS_LINE = "access_line"
"""Request-state key: the edge will write this request's access line (ACCESS_LOG_ENABLED)."""
STARTED_WORKFLOW = "started_workflow"
"""Request-state key: the workflow the request started, as the access line's `extra=` fields."""


def log_access(method: str, route: str, status: int, duration_ms: float) -> None:
    """The access line of the request being answered: a `statex.access` record like any other line. `route` is
    a route template or `unmatched`, never the raw path (its query may hold a download token)."""
    level = logging.WARNING if status >= 500 else logging.INFO
    if not access_log.isEnabledFor(level):
        return
    fields = {"method": method, "route": route, "status": status, "duration_ms": duration_ms}
    state = request_state.get()
    if state is not None and STARTED_WORKFLOW in state:
        fields |= state[STARTED_WORKFLOW]
    access_log.log(level, "%s %s %d %.1fms", method, route, status, duration_ms, extra=fields)


def name_in_access_line(workflow_type: str, started_id: str) -> bool:
    """Have the access line of the request being answered name the workflow it started: one line where there
    would be two. False where no access line is to come (no request, ACCESS_LOG_ENABLED off, a level that drops
    it) or it names one already: the caller then logs a line of its own."""
    state = request_state.get()
    if state is None or not state.get(ACCESS_LINE) or STARTED_WORKFLOW in state:
        return False
    if not access_log.isEnabledFor(logging.INFO):
        return False
    state[STARTED_WORKFLOW] = {"workflow_id": started_id, "workflow_type": workflow_type}
    return True


def bind_context(record: logging.LogRecord) -> None:
    """Fix on the record the ids that context_of reads from this thread's context variables, so that another
    thread can format it and still name its request and workflow."""
    for name, value in context_of(record).items():
        if not hasattr(record, name):
            setattr(record, name, value)


QUEUED_AT_MOST = 20_000
"""Lines waiting for the writer: past this (a destination that stopped draining) lines are dropped and counted, so
a stuck log pipe costs lines, never the process's memory."""


class QueueWithContext(QueueHandler):
    """The logging thread's side: the record is redacted (this handler's RedactCredentials filter) and queued
    with its context bound and its message made, so that an argument changed later cannot change the line; the
    writer's thread formats and writes it. Past QUEUED_AT_MOST waiting lines, a line is dropped and counted."""

    queue: SimpleQueue[logging.LogRecord]
    dropped = 0

    def enqueue(self, record: logging.LogRecord) -> None:
        if self.queue.qsize() >= QUEUED_AT_MOST:
            self.dropped += 1
            return
        self.queue.put_nowait(record)

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        bind_context(record)
        record.msg, record.args = record.getMessage(), None
        return record


class BatchWriter(QueueListener):
    """The writer's thread. Every WRITE_EVERY seconds it formats what was queued and writes it with one write,
    rather than being woken by each line and writing each: formatting a line between a request's own work cost
    the request several times what formatting a batch costs, and a wakeup and a write per line cost more again
    (docs/benchmarks.md)."""

    def __init__(self, source: QueueWithContext, formatter: logging.Formatter, stream: TextIO) -> None:
        self.source, self.lines, self.batch, self.stream = source, source.queue, io.StringIO(), stream
        self.dropped_reported = 0
        formats = logging.StreamHandler(self.batch)
        formats.setFormatter(formatter)
        super().__init__(self.lines, formats)

    def dequeue(self, block: bool) -> logging.LogRecord:
        while True:
            try:
                return self.lines.get_nowait()
            except Empty:
                self.write_batch()
                time.sleep(WRITE_EVERY)

    def stop(self) -> None:
        super().stop()
        self.write_batch()

    def write_batch(self) -> None:
        if (dropped := self.source.dropped) > self.dropped_reported:  # read once: the logging thread adds to it
            lost = logging.makeLogRecord({"name": __name__, "levelno": logging.WARNING, "levelname": "WARNING"})
            lost.msg = f"{dropped - self.dropped_reported} log lines dropped: the log destination is not keeping up"
            self.handlers[0].handle(lost)
            self.dropped_reported = dropped
        if text := self.batch.getvalue():
            self.batch.seek(0)
            self.batch.truncate()
            with suppress(OSError, ValueError):  # a broken stream loses lines
                self.stream.write(text)
                self.stream.flush()


WRITE_EVERY = 0.05
_listener: QueueListener | None = None
_direct: logging.Handler | None = None
"""While a served process queues its lines: the handler that writes them directly once queueing stops."""


@atexit.register
def stop_queueing() -> None:
    """Writes out what is queued; from then on the root logger formats and writes each line itself. A served API
    calls it once its lifespan is over, so that its last lines are written even if the process then ends abruptly
    (an exit that skips atexit, as a native library's teardown can); atexit covers the other ends."""
    global _listener, _direct
    if _listener is None or _direct is None:
        return
    root = logging.getLogger()
    root.addHandler(_direct)  # first, so that no line logged meanwhile is lost
    for handler in list(root.handlers):
        if isinstance(handler, QueueWithContext):
            root.removeHandler(handler)
    _listener.stop()
    _listener = _direct = None


def configure_logging(settings: Settings, *, queued: bool = False) -> None:
    """The process's logging from LOG_FORMAT and LOG_LEVEL: one handler on the root logger, which uvicorn's
    loggers now reach too (their lines become JSON as well). uvicorn's access log is switched off: the request
    edge (api/edge.py) writes one line per request with the route template, status, duration and ids, and never
    the query string (where a download link keeps its token). `queued` (a served API): a QueueListener's thread
    formats and writes the lines, so that the event loop never waits on the log destination."""
    global _listener, _direct
    log_format = settings.effective_log_format
    stop_queueing()
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    handler: logging.Handler = build_handler(log_format)
    if queued:
        queued_handler = QueueWithContext(SimpleQueue())
        queued_handler.addFilter(RedactCredentials())
        _direct, handler = handler, queued_handler
        _listener = BatchWriter(queued_handler, cast(logging.Formatter, _direct.formatter), sys.stderr)
        _listener.start()
        # What no formatter here writes, and each record would otherwise look up.
        logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per outgoing call says nothing new
    logging.getLogger("psycopg.pool").setLevel(logging.WARNING)  # three lines per checkout of the hot pool
    if log_format == "json":  # the ids are fields of their own; no need to repeat them inside the message
        workflow.logger.workflow_info_on_message = False
        activity.logger.activity_info_on_message = False
