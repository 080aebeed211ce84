"""A served API's logging: lines are formatted, redacted and written by a thread of their own, still naming
the request they came from; a destination that stops draining costs dropped lines, not memory; the access
line can be switched off while the metrics still count every request."""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import threading
from collections import deque
from collections.abc import Iterator

import pytest
from conftest import AppFactory
from helpers import serve

from observability import logs
from settings import Settings


@pytest.fixture
def root_logging() -> Iterator[None]:
    """Whatever the test sets up on the root logger is undone, and pytest's own handlers put back."""
    root, uvicorn_access = logging.getLogger(), logging.getLogger("uvicorn.access")
    handlers, level, access_disabled = list(root.handlers), root.level, uvicorn_access.disabled
    try:
        yield
    finally:
        uvicorn_access.disabled = access_disabled  # configure_logging turns uvicorn's access lines off
        logs._stop_writer()
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
        logging.logThreads = logging.logProcesses = logging.logMultiprocessing = True


@pytest.fixture
def queued_stderr(root_logging: None, monkeypatch: pytest.MonkeyPatch, settings: Settings) -> io.StringIO:
    """The root logger as a served API sets it up (queued, JSON), writing to a captured stderr."""
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    logs.configure_logging(settings.model_copy(update={"log_format": "json"}), queued=True)
    return stream


def test_lines_are_written_by_another_thread_and_keep_their_request_context(
    queued_stderr: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    formatted_in: list[threading.Thread] = []
    format_json = logs.JsonFormatter.format

    def noting_the_thread(self: logs.JsonFormatter, record: logging.LogRecord) -> str:
        formatted_in.append(threading.current_thread())
        return format_json(self, record)

    monkeypatch.setattr(logs.JsonFormatter, "format", noting_the_thread)
    request, state = logs.request_id.set("req-queued-1"), logs.request_state.set({"user_id": "user-7"})
    logging.getLogger("statex.test").info("signed in with token=%s", "s3cr3t-t0ken-value")
    logs.request_state.reset(state)  # the request is over before the writer gets to its line
    logs.request_id.reset(request)
    logs._stop_writer()  # writes out what is queued

    (line,) = [json.loads(text) for text in queued_stderr.getvalue().splitlines()]
    assert line["request_id"] == "req-queued-1"
    assert line["user_id"] == "user-7"
    assert "s3cr3t-t0ken-value" not in queued_stderr.getvalue()
    assert formatted_in and threading.main_thread() not in formatted_in


def test_a_full_queue_drops_lines_and_then_says_how_many() -> None:
    lines: deque[logging.LogRecord] = deque()
    handler = logs.Enqueue(lines, most=2)
    for index in range(5):
        handler.handle(logging.makeLogRecord({"msg": f"line {index}", "levelno": logging.INFO}))
    assert [lines.popleft().getMessage() for _ in range(2)] == ["line 0", "line 1"]
    assert not lines

    handler.handle(logging.makeLogRecord({"msg": "after", "levelno": logging.INFO}))
    note, after = lines.popleft(), lines.popleft()
    assert note.getMessage().startswith("3 log lines were dropped") and note.levelno == logging.WARNING
    assert after.getMessage() == "after"
    assert not lines


def test_once_queueing_stops_lines_are_written_at_once_after_the_queued_ones(queued_stderr: io.StringIO) -> None:
    log = logging.getLogger("statex.test")
    log.info("queued")
    logs.stop_queueing()  # a served API's lifespan is over
    log.info("written at once")
    assert [json.loads(text)["message"] for text in queued_stderr.getvalue().splitlines()] == [
        "queued",
        "written at once",
    ]
    assert not [handler for handler in logging.getLogger().handlers if isinstance(handler, logs.Enqueue)]


def catalogue_count(scrape: str) -> float:
    series = 'statex_http_requests_total{method="GET",route="/api/payments/catalogue",status="200"} '
    return sum(float(line.removeprefix(series)) for line in scrape.splitlines() if line.startswith(series))


async def test_access_lines_can_be_switched_off_and_the_metrics_still_count(
    make_app: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="statex.access")
    async with serve(make_app(access_log_enabled=False)) as api:
        before = catalogue_count((await api.get("/metrics")).text)
        assert (await api.get("/api/payments/catalogue")).status_code == 200
        after = catalogue_count((await api.get("/metrics")).text)
    assert not [record for record in caplog.records if record.name == "statex.access"]
    assert after == before + 1

    caplog.clear()
    async with serve(make_app()) as api:
        assert (await api.get("/api/payments/catalogue")).status_code == 200
    (line,) = [record.getMessage() for record in caplog.records if record.name == "statex.access"]
    assert line.startswith("GET /api/payments/catalogue 200 ")


async def test_a_served_api_queues_its_lines_and_writes_them_all_once_its_lifespan_ends(
    queued_stderr: io.StringIO, make_app: AppFactory
) -> None:
    """The access line of a request goes through the queue (with the request's id), and nothing queued is left
    behind when the lifespan ends: from then on the root logger writes itself."""
    async with serve(make_app()) as api:
        answer = await api.get("/health", headers={"X-Request-ID": "served-queued-1"})
    assert answer.status_code == 200
    assert not [handler for handler in logging.getLogger().handlers if isinstance(handler, logs.Enqueue)]
    access = [json.loads(text) for text in queued_stderr.getvalue().splitlines() if '"statex.access"' in text]
    assert [(line["request_id"], line["route"], line["status"]) for line in access] == [
        ("served-queued-1", "/health", 200)
    ]


def test_uvicorns_factory_sets_up_queued_logging(
    root_logging: None, monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    import api.app

    monkeypatch.setattr(api.app, "get_settings", lambda: settings)
    monkeypatch.delenv(api.app.CLIENT_RUNTIME_THREADS, raising=False)  # put back as it was after the test
    api.app.serve()
    assert [type(handler) for handler in logging.getLogger().handlers] == [logs.Enqueue]
    assert os.environ[api.app.CLIENT_RUNTIME_THREADS] == "1"  # the Temporal client's runtime: one thread


def test_an_operators_own_client_thread_count_is_kept(
    root_logging: None, monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    import api.app

    monkeypatch.setattr(api.app, "get_settings", lambda: settings)
    monkeypatch.setenv(api.app.CLIENT_RUNTIME_THREADS, "3")
    api.app.serve()
    assert os.environ[api.app.CLIENT_RUNTIME_THREADS] == "3"


def test_a_queued_access_line_is_the_line_the_formatter_writes_for_the_same_request(
    root_logging: None, caplog: pytest.LogCaptureFixture
) -> None:
    """The served fast path (a tuple, formatted by the writer) and the logging path write the same JSON."""
    assert logs._queue is None  # not a served process: the line goes through the logging module
    caplog.set_level(logging.INFO, logger=logs.ACCESS_LOGGER)
    request_state = {"user_id": "user-9", logs.ACCESS_LINE_TO_COME: True}
    request, state = logs.request_id.set("req-access-1"), logs.request_state.set(request_state)
    try:
        assert logs.name_in_access_line("ContactWorkflow", "contact-1")
        logs.log_access("GET", "/api/files/{file_id}", 503, 12.5)
        (record,) = [record for record in caplog.records if record.name == logs.ACCESS_LOGGER]
        logs.bind_context(record)  # as the Enqueue handler does, while the request's context is there
    finally:
        logs.request_state.reset(state)
        logs.request_id.reset(request)
    formatted = json.loads(logs.JsonFormatter().format(record))

    queued = logs.AccessLine(
        record.created,
        logging.WARNING,
        "GET",
        "/api/files/{file_id}",
        503,
        12.5,
        "req-access-1",
        "user-9",
        "contact-1",
        "ContactWorkflow",
    )
    assert json.loads(queued.json()) == formatted
    assert formatted["workflow_id"] == "contact-1" and formatted["workflow_type"] == "ContactWorkflow"
    assert formatted["level"] == "WARNING" and formatted["message"] == "GET /api/files/{file_id} 503 12.5ms"


def test_a_served_process_queues_access_lines_without_making_records(queued_stderr: io.StringIO) -> None:
    lines: list[object] = []
    queue = logs._queue
    assert queue is not None
    put = queue.put

    def noting(line: logs.Queued) -> None:
        lines.append(line)
        put(line)

    queue.put = noting  # type: ignore[method-assign]
    request = logs.request_id.set("req-access-2")
    try:
        logs.log_access("GET", "/health", 200, 0.4)
    finally:
        logs.request_id.reset(request)
    logs._stop_writer()
    assert [type(line) for line in lines] == [logs.AccessLine]
    (written,) = [json.loads(text) for text in queued_stderr.getvalue().splitlines()]
    assert (written["request_id"], written["route"], written["status"], written["level"]) == (
        "req-access-2",
        "/health",
        200,
        "INFO",
    )
    assert "user_id" not in written


@pytest.mark.parametrize(
    ("state", "access_level", "named"),
    [
        ({logs.ACCESS_LINE_TO_COME: True}, logging.INFO, True),
        (None, logging.INFO, False),  # no request: a CLI or a test starting a workflow
        ({}, logging.INFO, False),  # ACCESS_LOG_ENABLED=false: the edge writes no line to carry it
        ({logs.ACCESS_LINE_TO_COME: True}, logging.WARNING, False),  # a level that drops a 2xx access line
        ({logs.ACCESS_LINE_TO_COME: True, "statex_workflow_id": "first-1"}, logging.INFO, False),  # a second start
    ],
)
def test_the_access_line_names_a_started_workflow_only_where_it_will_be_written(
    root_logging: None, state: dict[str, object] | None, access_level: int, named: bool
) -> None:
    """Otherwise services.temporal logs the start on a line of its own: no start goes unlogged."""
    access, token = logging.getLogger(logs.ACCESS_LOGGER), logs.request_state.set(state)
    level = access.level
    access.setLevel(access_level)
    try:
        assert logs.name_in_access_line("ContactWorkflow", "contact-2") is named
    finally:
        access.setLevel(level)
        logs.request_state.reset(token)
    if named:
        assert state is not None and state["statex_workflow_id"] == "contact-2"
