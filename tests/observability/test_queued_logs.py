"""A served API's logging: a line is redacted where it is logged and queued with its request's context; a
QueueListener's thread formats and writes it, so a log destination that stops draining does not stop a request;
what is queued is written when the lifespan ends; the access line is a record like any other and can be switched off
while the metrics still count every request."""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from conftest import AppFactory
from helpers import eventually, serve

from observability import logs
from observability.redaction import RedactCredentials, install_log_redaction
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
        logs.stop_queueing()
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
        logging.logThreads = logging.logProcesses = logging.logMultiprocessing = True


class Destination(io.StringIO):
    """stderr as a served process writes it: notes the threads that write, and blocks them until it is drained."""

    def __init__(self, *, draining: bool = True) -> None:
        super().__init__()
        self.draining, self.waiting = threading.Event(), threading.Event()
        if draining:
            self.draining.set()
        self.writers: set[threading.Thread] = set()

    def write(self, text: str) -> int:
        self.writers.add(threading.current_thread())
        self.waiting.set()
        assert self.draining.wait(timeout=20), "the test never drained the destination"
        return super().write(text)

    def lines(self) -> list[dict[str, object]]:
        return [json.loads(text) for text in self.getvalue().splitlines()]


def queue_to(stream: Destination, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Destination:
    """The root logger as a served API sets it up (queued, JSON), writing to `stream`."""
    monkeypatch.setattr(sys, "stderr", stream)
    logs.configure_logging(settings.model_copy(update={"log_format": "json"}), queued=True)
    return stream


@pytest.fixture
def queued_stderr(root_logging: None, monkeypatch: pytest.MonkeyPatch, settings: Settings) -> Destination:
    return queue_to(Destination(), settings, monkeypatch)


def test_lines_are_written_by_another_thread_and_keep_their_request_context(queued_stderr: Destination) -> None:
    request, state = logs.request_id.set("req-queued-1"), logs.request_state.set({"user_id": "user-7"})
    logging.getLogger("statex.test").info("signed in with token=%s", "s3cr3t-t0ken-value")
    logs.request_state.reset(state)  # the request is over before the writer's thread formats its line
    logs.request_id.reset(request)
    deadline = time.monotonic() + 20
    while not queued_stderr.getvalue():
        assert time.monotonic() < deadline, "the line was never written"
        time.sleep(0.01)

    (line,) = queued_stderr.lines()
    assert line["request_id"] == "req-queued-1"
    assert line["user_id"] == "user-7"
    assert "s3cr3t-t0ken-value" not in queued_stderr.getvalue()
    assert queued_stderr.writers and threading.current_thread() not in queued_stderr.writers


def test_a_queued_line_says_what_its_arguments_were_when_it_was_logged(queued_stderr: Destination) -> None:
    pending = ["first"]
    logging.getLogger("statex.test").info("pending: %s", pending)
    pending.append("second")  # before the writer's thread formats the line
    logs.stop_queueing()
    assert [line["message"] for line in queued_stderr.lines()] == ["pending: ['first']"]


async def test_a_log_destination_that_stops_draining_does_not_stop_a_request(
    root_logging: None, monkeypatch: pytest.MonkeyPatch, settings: Settings, make_app: AppFactory
) -> None:
    stream = queue_to(Destination(draining=False), settings, monkeypatch)
    async with serve(make_app()) as api:
        logging.getLogger("statex.test").warning("first")

        async def listener_stuck() -> bool:
            return stream.waiting.is_set()

        await eventually(listener_stuck, what="the listener's thread to block on the destination")
        answer = await api.get("/health", headers={"X-Request-ID": "blocked-destination-1"})
        assert answer.status_code == 200  # answered while the destination takes nothing
        stream.draining.set()

        async def access_line_written() -> list[str]:
            return [str(line["request_id"]) for line in stream.lines() if line["logger"] == "statex.access"]

        assert await eventually(access_line_written, what="the access line once the destination drains") == [
            "blocked-destination-1"
        ]
        assert threading.current_thread() not in stream.writers  # while serving, the event loop never wrote a line


def test_a_destination_that_stops_draining_costs_counted_lines_not_memory(
    root_logging: None, monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    """Past QUEUED_AT_MOST waiting lines, lines are dropped, and a line says how many once the destination drains."""
    monkeypatch.setattr(logs, "QUEUED_AT_MOST", 50)
    stream = queue_to(Destination(draining=False), settings, monkeypatch)
    log = logging.getLogger("statex.test")
    log.warning("first")
    deadline = time.monotonic() + 20
    while not stream.waiting.is_set():  # the writer's thread is blocked on the destination
        assert time.monotonic() < deadline, "the writer never wrote"
        time.sleep(0.01)
    for number in range(500):
        log.warning("line %d", number)
    stream.draining.set()
    logs.stop_queueing()

    messages = [str(line["message"]) for line in stream.lines()]
    kept = [message for message in messages if message.startswith("line ")]
    assert 50 <= len(kept) <= 51 and kept[0] == "line 0"  # the first 50 queued (one may have been dequeued)
    (note,) = [message for message in messages if "dropped" in message]
    assert note == f"{500 - len(kept)} log lines dropped: the log destination is not keeping up"


def test_a_line_is_redacted_once_in_the_thread_that_logs_it(
    queued_stderr: Destination, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_log_redaction()  # as create_app does: the queueing handler has its filter already
    (queueing,) = [handler for handler in logging.getLogger().handlers if isinstance(handler, logs.QueueWithContext)]
    assert sum(isinstance(each, RedactCredentials) for each in queueing.filters) == 1
    redacted_in: list[threading.Thread] = []
    redact = RedactCredentials.filter

    def noting_the_thread(self: RedactCredentials, record: logging.LogRecord) -> bool:
        redacted_in.append(threading.current_thread())
        return redact(self, record)

    monkeypatch.setattr(RedactCredentials, "filter", noting_the_thread)
    logging.getLogger("statex.test").info("GET /api/files/x?token=%s", "s3cr3t-t0ken-value")
    logs.stop_queueing()
    # In the logging thread only (pytest's capture handlers have the filter too), never in the listener's.
    assert set(redacted_in) == {threading.current_thread()}
    (line,) = queued_stderr.lines()
    assert line["message"] == "GET /api/files/x?token=[Filtered]"


def test_once_queueing_stops_lines_are_written_at_once_after_the_queued_ones(queued_stderr: Destination) -> None:
    log = logging.getLogger("statex.test")
    log.info("queued")
    logs.stop_queueing()  # a served API's lifespan is over
    log.info("written at once")
    assert [line["message"] for line in queued_stderr.lines()] == ["queued", "written at once"]
    assert not [handler for handler in logging.getLogger().handlers if isinstance(handler, logs.QueueWithContext)]


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
    queued_stderr: Destination, make_app: AppFactory
) -> None:
    """The access line of a request goes through the queue (with the request's id), and nothing queued is left
    behind when the lifespan ends: from then on the root logger writes itself."""
    async with serve(make_app()) as api:
        answer = await api.get("/health", headers={"X-Request-ID": "served-queued-1"})
    assert answer.status_code == 200
    assert not [handler for handler in logging.getLogger().handlers if isinstance(handler, logs.QueueWithContext)]
    access = [line for line in queued_stderr.lines() if line["logger"] == "statex.access"]
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
    assert [type(handler) for handler in logging.getLogger().handlers] == [logs.QueueWithContext]
    assert os.environ[api.app.CLIENT_RUNTIME_THREADS] == "1"  # the Temporal client's runtime: one thread


def test_an_operators_own_client_thread_count_is_kept(
    root_logging: None, monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    import api.app

    monkeypatch.setattr(api.app, "get_settings", lambda: settings)
    monkeypatch.setenv(api.app.CLIENT_RUNTIME_THREADS, "3")
    api.app.serve()
    assert os.environ[api.app.CLIENT_RUNTIME_THREADS] == "3"


def test_the_access_line_is_a_record_formatted_like_every_other_line(queued_stderr: Destination) -> None:
    request = logs.request_id.set("req-access-1")
    state = logs.request_state.set({"user_id": "user-9", logs.ACCESS_LINE: True})
    try:
        assert logs.name_in_access_line("ContactWorkflow", "contact-1")
        logs.log_access("GET", "/api/files/{file_id}", 503, 12.5)
    finally:
        logs.request_state.reset(state)
        logs.request_id.reset(request)
    logs.stop_queueing()
    (line,) = queued_stderr.lines()
    assert {key: value for key, value in line.items() if key != "time"} == {
        "level": "WARNING",
        "logger": "statex.access",
        "message": "GET /api/files/{file_id} 503 12.5ms",
        "request_id": "req-access-1",
        "user_id": "user-9",
        "workflow_id": "contact-1",
        "workflow_type": "ContactWorkflow",
        "route": "/api/files/{file_id}",
        "method": "GET",
        "status": 503,
        "duration_ms": 12.5,
    }


@pytest.mark.parametrize(
    ("state", "access_level", "named"),
    [
        ({logs.ACCESS_LINE: True}, logging.INFO, True),
        (None, logging.INFO, False),  # no request: a CLI or a test starting a workflow
        ({}, logging.INFO, False),  # ACCESS_LOG_ENABLED=false: the edge writes no line to carry it
        ({logs.ACCESS_LINE: True}, logging.WARNING, False),  # a level that drops a 2xx access line
        ({logs.ACCESS_LINE: True, logs.STARTED_WORKFLOW: {"workflow_id": "first-1"}}, logging.INFO, False),
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
        assert state is not None and state[logs.STARTED_WORKFLOW]["workflow_id"] == "contact-2"  # type: ignore[index]
