"""Logging for the API, the worker and the CLI: one setup, JSON lines in production, readable text elsewhere.

Every line carries what it is about where that is known: the request (`request_id`, `user_id`, `route`,
`status`, `duration_ms`) and the workflow (`workflow_id`). The ids come from context variables that the
request edge (api/edge.py) and the worker's interceptors (observability/interceptors.py) set, so a module
logs with a plain `logging.getLogger(__name__)` and gets them for free.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping
from contextlib import nullcontext, suppress
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, NamedTuple, TextIO

from temporalio import activity, workflow

from observability.redaction import FILTERED, SENSITIVE_KEYS, RedactCredentials, redact
from settings import Settings

request_id: ContextVar[str | None] = ContextVar("statex_request_id", default=None)
workflow_id: ContextVar[str | None] = ContextVar("statex_workflow_id", default=None)
request_state: ContextVar[dict[str, Any] | None] = ContextVar("statex_request_state", default=None)
"""The request's `scope["state"]`: get_optional_user writes `user_id` there once the caller is known, and
a shared mapping (not a value) lets the lines logged after that, and the access line, read it."""

ACCESS_LINE_TO_COME = "statex_access_line"
"""Set in the request's state by the edge when the request will have an access line (ACCESS_LOG_ENABLED)."""
_STARTED_ID, _STARTED_TYPE = "statex_workflow_id", "statex_workflow_type"  # what name_in_access_line leaves there

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
    if isinstance(value, Mapping):
        return {str(inner): _safe(str(inner), item) for inner, item in value.items()}
    if isinstance(value, int | float | bool) or value is None:
        return value
    return redact(str(value))


def _timestamp(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the context fields, any other `extra=`, and
    the exception. Each string is redacted on its own (redacting the finished line could cut it mid-JSON)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        line.update(context_of(record))
        for key, value in vars(record).items():
            if key not in _NOT_EXTRAS and key not in line and not key.startswith("_"):
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


def build_handler(log_format: str) -> logging.StreamHandler[TextIO]:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(RedactCredentials())
    return handler


def bind_context(record: logging.LogRecord) -> None:
    """Fix on the record the ids that context_of would read from this thread's context variables, so that it
    can be formatted in another thread (or later) and still name its request and workflow."""
    for name, value in context_of(record).items():
        if not hasattr(record, name):
            setattr(record, name, value)


ACCESS_LOGGER = "statex.access"
ACCESS_MESSAGE = "%s %s %d %.1fms"  # method, route template, status, duration
access_log = logging.getLogger(ACCESS_LOGGER)


class AccessLine(NamedTuple):
    """One request's access line as the event loop queues it in a served process that writes JSON: a tuple, not
    a LogRecord, made into the same JSON line the formatter would write by the writer's thread. Every request
    has one, so its cost counts, on the loop and in all: a tuple costs a fraction of a record (docs/benchmarks.md)."""

    created: float
    levelno: int
    method: str
    route: str  # a route template or `unmatched`, never the raw path (its query may hold a token)
    status: int
    duration_ms: float
    request_id: str | None
    user_id: str | None
    workflow_id: str | None = None  # the workflow the request started, if it did (name_in_access_line)
    workflow_type: str | None = None

    def json(self) -> str:
        method = redact(self.method)
        line: dict[str, Any] = {
            "time": _timestamp(self.created),
            "level": logging.getLevelName(self.levelno),
            "logger": ACCESS_LOGGER,
            "message": ACCESS_MESSAGE % (method, self.route, self.status, self.duration_ms),
            "request_id": None if self.request_id is None else redact(self.request_id),
            "user_id": self.user_id,
            "workflow_id": self.workflow_id,
            "route": self.route,
            "method": method,
            "status": self.status,
            "duration_ms": self.duration_ms,
            "workflow_type": self.workflow_type,
        }
        return json.dumps({key: value for key, value in line.items() if value is not None})


def log_access(method: str, route: str, status: int, duration_ms: float) -> None:
    """The access line of the request being answered: queued as an AccessLine where a served process writes
    JSON from its writer's thread, else logged as any other line."""
    level = logging.WARNING if status >= 500 else logging.INFO
    if not access_log.isEnabledFor(level):
        return
    state = request_state.get() or {}
    user, started, started_type = state.get("user_id"), state.get(_STARTED_ID), state.get(_STARTED_TYPE)
    if _queue is not None:
        _queue.put(
            AccessLine(
                time.time(),
                level,
                method,
                route,
                status,
                duration_ms,
                request_id.get(),
                user and str(user),
                started,
                started_type,
            )
        )
        return
    fields = {"method": method, "route": route, "status": status, "duration_ms": duration_ms}
    if started is not None:
        fields |= {"workflow_id": started, "workflow_type": started_type}
    access_log.log(level, ACCESS_MESSAGE, method, route, status, duration_ms, extra=fields)


def name_in_access_line(workflow_type: str, started_id: str) -> bool:
    """Have the access line of the request being answered name the workflow it started: one line, not two (a
    line costs a workflow start CPU of its own, docs/benchmarks.md). False where no access
    line is to come (no request, ACCESS_LOG_ENABLED off, a level that drops it) or it names one already: the
    caller then logs its own line."""
    state = request_state.get()
    if state is None or not state.get(ACCESS_LINE_TO_COME) or _STARTED_ID in state:
        return False
    if not access_log.isEnabledFor(logging.INFO):
        return False
    state[_STARTED_ID], state[_STARTED_TYPE] = started_id, workflow_type
    return True


Queued = logging.LogRecord | AccessLine


class Enqueue(logging.Handler):
    """The event loop's side of a served process's logging: a record is bound to its context and queued (an
    append, no lock, no wakeup), and the writer's thread formats, redacts and writes the queue in batches. A
    full queue (a log destination that stopped draining) drops lines rather than memory or the event loop's
    time, and says how many once there is room again."""

    redacted_downstream = True  # by the writer's handler, in its thread (observability.install_log_redaction)

    def __init__(self, lines: deque[Queued], most: int) -> None:
        super().__init__()
        self.lines, self.most, self.dropped = lines, most, 0

    def emit(self, record: logging.LogRecord) -> None:
        bind_context(record)
        self.put(record)

    def put(self, line: Queued) -> None:
        if len(self.lines) >= self.most:
            self.dropped += 1
            return
        if self.dropped:
            self.lines.append(
                logging.makeLogRecord(
                    {
                        "name": __name__,
                        "levelno": logging.WARNING,
                        "levelname": "WARNING",
                        "msg": "%d log lines were dropped: the log destination did not keep up",
                        "args": (self.dropped,),
                    }
                )
            )
            self.dropped = 0
        self.lines.append(line)


class LineWriter(threading.Thread):
    """Every WRITE_EVERY seconds, formats what was queued and writes it with one write: a thread that wakes a
    few times a second rather than once per line (a wakeup per line cost as much CPU as the line itself)."""

    def __init__(self, lines: deque[Queued], handler: logging.StreamHandler[TextIO]) -> None:
        super().__init__(name="statex-log-writer", daemon=True)
        self.lines, self.handler = lines, handler
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(WRITE_EVERY):
            self.write_queued()
        self.write_queued()

    def write_queued(self) -> None:
        text = []
        while self.lines:
            record = self.lines.popleft()
            if isinstance(record, AccessLine):  # queued only when this handler writes JSON; it redacts its own text
                text.append(record.json() + "\n")
                continue
            if record.levelno >= self.handler.level and self.handler.filter(record):
                try:
                    text.append(self.handler.format(record) + "\n")
                except Exception:
                    self.handler.handleError(record)
        if text:
            # Under the handler's lock: once queueing stops (stop_queueing) the same handler also writes directly.
            with self.handler.lock or nullcontext(), suppress(OSError, ValueError):  # a broken stream loses lines
                self.handler.stream.write("".join(text))
                self.handler.stream.flush()

    def stop(self) -> None:
        """Writes out what is queued and ends the thread."""
        self.stopping.set()
        self.join()


QUEUED_LINES = 10_000
WRITE_EVERY = 0.05
_writer: LineWriter | None = None
_queue: Enqueue | None = None
"""Set while a served process that writes JSON queues its lines: the access line then skips the LogRecord."""


@atexit.register
def _stop_writer() -> None:
    """Writes out what is queued, then ends the writer's thread (at exit, or before logging is set up again)."""
    global _writer, _queue
    _queue = None
    if _writer is not None:
        _writer.stop()
        _writer = None


def stop_queueing() -> None:
    """From here on the root logger writes each line itself, after what was queued: a served API calls it once
    its lifespan is over, so that its last lines are written even if the process then ends abruptly (an exit
    that skips atexit, as a native library's teardown can)."""
    if _writer is None:
        return
    root = logging.getLogger()
    root.addHandler(_writer.handler)  # first, so that no line logged meanwhile is lost; then what was queued
    for handler in list(root.handlers):
        if isinstance(handler, Enqueue):
            root.removeHandler(handler)
    _stop_writer()


def configure_logging(settings: Settings, *, queued: bool = False) -> None:
    """The process's logging from LOG_FORMAT and LOG_LEVEL: one handler on the root logger, which uvicorn's
    loggers now reach too (their lines become JSON as well). uvicorn's access log is switched off: the
    request edge (api/edge.py) writes one line per request with the route template, status, duration and ids, and
    never the query string (where a download link keeps its token). `queued` (a served API): lines are
    formatted and written by a thread of their own, so that a line costs the event loop only its record (the
    access line, in JSON, only a tuple: AccessLine)."""
    log_format = settings.effective_log_format
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    _stop_writer()
    writes = build_handler(log_format)
    handler: logging.Handler = writes
    if queued:
        global _writer, _queue
        lines: deque[Queued] = deque()
        _writer = LineWriter(lines, writes)
        _writer.start()
        handler = Enqueue(lines, QUEUED_LINES)
        if log_format == "json":
            _queue = handler
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
    if log_format == "json":  # the ids are fields of their own; no need to repeat them inside the message
        workflow.logger.workflow_info_on_message = False
        activity.logger.activity_info_on_message = False
