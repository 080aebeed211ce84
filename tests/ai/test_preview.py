"""The generated app, started in the sandbox after its checks pass: fetched, shot by a headless browser, and
stopped with everything it started. An app that does not start is a failed check with what happened; an app
that attacks (binds every port, forks without end, writes gigabytes, reads the host's files, reaches for the
network, never answers) or a page that never settles costs one bounded failure and nothing else.
The tests that take a picture need Debian's chromium (PREVIEW_BROWSER): without it they are skipped, saying
so, unless STATEX_REQUIRE_BROWSER=1 (CI), where they fail."""

from __future__ import annotations

import asyncio
import copy
import functools
import os
import socket
import struct
import time
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import eventually
from temporalio.contrib.pydantic import pydantic_data_converter

from activities.ai.offline import template_answer
from activities.ai.offline_templates import idea_title, main_features
from activities.packaging import code_files
from activities.sandbox import Sandbox, SandboxLimits
from activities.sandbox_preview import START_CHECK, Browser, PreviewLimits, preview_image
from ai.test_sandbox import _processes_with, answer, check, sandbox
from models.messages.prototypes import VerificationRequest, VerificationResult
from models.prompts import CODE, REQUIREMENTS, TESTS

QUICK = PreviewLimits(start_seconds=5, shot_seconds=8)
"""Short enough that the attacks' bounded failures come quickly, long enough for a busy machine."""
BROWSER = "/usr/bin/chromium"


@functools.cache
def starter(preview: PreviewLimits = QUICK, *, browser: bool = True) -> Sandbox:
    """The real sandbox with the worker's own limits (a browser needs more CPU seconds than FAST gives)."""
    made = copy.copy(sandbox(SandboxLimits()))
    made.preview_limits = preview
    made.browser = Browser.find(BROWSER) if browser else "no browser on this worker (test)"
    return made


def start(*files: tuple[str, str], preview: PreviewLimits = QUICK, browser: bool = True) -> VerificationResult:
    request = VerificationRequest(prototype_id=uuid.uuid4(), round=0, code_answers=[answer(*files)])
    return starter(preview, browser=browser).verify(request)


@pytest.fixture
def needs_browser() -> None:
    found = Browser.find(BROWSER)
    if isinstance(found, str):
        if os.environ.get("STATEX_REQUIRE_BROWSER") == "1":
            pytest.fail(f"STATEX_REQUIRE_BROWSER=1 and {found}")
        pytest.skip(found)


def offline_code(idea: str) -> list[str]:
    """The offline tier's requirements, code and tests answers for `idea`, as the pipeline asks for them."""
    requirements = template_answer(REQUIREMENTS.call(idea, {}))
    answers = {"requirements": requirements, "plan": ""}
    return [template_answer(CODE.call(idea, answers)), template_answer(TESTS.call(idea, answers))]


def colours(png: bytes) -> set[tuple[int, ...]]:
    """The distinct pixel colours of an 8-bit RGB or RGBA PNG (what chromium writes), decoded by hand."""
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height, depth, kind = struct.unpack(">IIBB", png[16:26])
    assert depth == 8 and kind in (2, 6), (depth, kind)
    channels = 3 if kind == 2 else 4
    data, at = b"", 8
    while at < len(png):
        (length,) = struct.unpack(">I", png[at : at + 4])
        if png[at + 4 : at + 8] == b"IDAT":
            data += png[at + 8 : at + 8 + length]
        at += 12 + length
    raw, stride = zlib.decompress(data), width * channels
    previous, found = bytearray(stride), set()
    for row in range(height):
        kind_of_filter = raw[row * (stride + 1)]
        line = bytearray(raw[row * (stride + 1) + 1 : (row + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up, corner = previous[i], previous[i - channels] if i >= channels else 0
            if kind_of_filter == 1:
                line[i] = (line[i] + left) & 255
            elif kind_of_filter == 2:
                line[i] = (line[i] + up) & 255
            elif kind_of_filter == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            elif kind_of_filter == 4:
                estimate = left + up - corner
                pa, pb, pc = abs(estimate - left), abs(estimate - up), abs(estimate - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 255
        found.update(tuple(line[i : i + 3]) for i in range(0, stride, channels))
        previous = line
    return found


def test_the_offline_templates_app_starts_and_its_picture_shows_its_page(needs_browser: None) -> None:
    idea = "A booking app for dog walkers. Owners book walks. Walkers see their day <b>at a glance</b>."
    result = starter().verify(VerificationRequest(prototype_id=uuid.uuid4(), round=0, code_answers=offline_code(idea)))
    assert result.passed, result.failures()
    assert "3 passed" in check(result, "pytest")[1]  # the template's tests: the page names the idea, escaped
    passed, said = check(result, START_CHECK)
    assert passed and said.startswith("GET / answered 200 (text/html, "), said
    assert result.app_started is True and result.preview_unavailable is None
    assert result.preview is not None
    assert (result.preview.width, result.preview.height, result.preview.page_url_path) == (1280, 800, "/")
    shown = colours(result.preview.png)
    assert len(shown) > 1  # not blank
    assert (0x34, 0x51, 0xB2) in shown  # the page's header, as its style draws it


def test_the_offline_page_names_the_idea_and_lists_the_requirements_features() -> None:
    assert idea_title("# Dog walks\nOwners book walks.") == "Dog walks"
    assert idea_title("") == "Your prototype"
    assert len(idea_title("word " * 100)) <= 70
    written = "# Requirements\n## Who uses it\n- Owners\n## User stories\n1. Owners **book** walks\n- See `today`\n"
    assert main_features(written, "idea") == ["Owners book walks", "See today"]
    assert main_features("No bullets at all.", "Book walks. See the day.") == ["Book walks", "See the day"]
    hostile = "__TITLE__ ``` </h1><script>alert(1)</script> '''\"\"\" \\"
    [code, tests] = offline_code(hostile)
    page: dict[str, object] = {}
    exec(compile(code_files(code)["main.py"], "main.py", "exec"), page)  # the template's own code, not a model's
    assert isinstance(page["PAGE"], bytes)
    assert b"<script>" not in page["PAGE"] and b"&lt;/h1&gt;&lt;script&gt;alert(1)" in page["PAGE"]
    result = starter().verify(VerificationRequest(prototype_id=uuid.uuid4(), round=0, code_answers=[code, tests]))
    assert check(result, "pytest")[0], result.failures()  # its own tests: the title is on the page, escaped


def test_an_app_that_exits_is_a_failed_check_with_its_exit_status_and_last_lines() -> None:
    result = start(("main.py", "print('loading the settings')\nraise SystemExit(3)\n"))
    assert not result.passed and result.app_started is False
    assert result.preview is None and result.preview_unavailable is None
    passed, output = check(result, START_CHECK)
    assert not passed
    assert "the app exited with status 3 before its main page answered" in output
    assert "loading the settings" in output
    assert f"{START_CHECK}:\nthe app exited with status 3" in result.failures()  # what the fix round is told


SERVE = """
import os
from http.server import BaseHTTPRequestHandler, HTTPServer

class Page(BaseHTTPRequestHandler):
    def do_GET(self):
        body = {body!r}
        self.send_response({status})
        self.send_header("Content-Type", {content_type!r})
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Page).serve_forever()
"""


def serving(body: bytes, status: int = 200, content_type: str = "text/html") -> tuple[str, str]:
    return ("main.py", SERVE.format(body=body, status=status, content_type=content_type))


def test_an_app_that_answers_an_error_is_a_failed_check_with_the_http_status() -> None:
    result = start(serving(b"<h1>Internal error</h1>", status=500))
    assert not result.passed and result.app_started is False
    assert "GET / answered HTTP status 500 (text/html)" in check(result, START_CHECK)[1]


def test_an_app_with_an_empty_page_is_a_failed_check() -> None:
    result = start(serving(b"  \n"))
    assert not result.passed
    assert "with 0 bytes of content" in check(result, START_CHECK)[1]


def test_an_app_with_no_web_page_passes_without_a_picture_saying_why() -> None:
    result = start(serving(b'{"walks": []}', content_type="application/json"))
    assert result.passed and result.app_started is True
    assert result.preview is None
    assert result.preview_unavailable == "the app's main page is not a web page (application/json)"


def test_code_without_an_entry_point_is_not_started_and_says_why() -> None:
    result = start(("walks.py", "def book(day):\n    return day\n"))
    assert result.passed and result.app_started is None and result.preview is None
    assert result.preview_unavailable == "the code has no main.py to start: there is no page to show"
    assert [c.name for c in result.checks] == ["compile walks.py"]


def test_without_a_browser_the_app_is_still_started_and_the_verdict_says_why_there_is_no_picture() -> None:
    result = start(serving(b"<!doctype html><h1>Walks</h1>"), browser=False)
    assert result.passed and result.app_started is True
    assert (result.preview, result.preview_unavailable) == (None, "no browser on this worker (test)")


def test_previews_turned_off_say_so() -> None:
    made = Sandbox(SandboxLimits(), previews=False)
    assert made.browser == "previews are turned off (PREVIEWS_ENABLED=false)"
    assert Browser.find("/nonexistent/chromium") == (
        "no browser at /nonexistent/chromium (install Debian's chromium, or set PREVIEW_BROWSER)"
    )


# --- attacks: each costs one bounded failure, and nothing outlives it -------------------------------------------


def bounded(*files: tuple[str, str], within: float) -> VerificationResult:
    began = time.monotonic()
    result = start(*files)
    took = time.monotonic() - began
    assert took < within, f"the attack took {took:.0f} s"
    return result


def test_an_app_that_never_answers_fails_at_the_start_limit() -> None:
    result = bounded(("main.py", "import time\nprint('thinking', flush=True)\ntime.sleep(10**6)\n"), within=40)
    assert not result.passed
    output = check(result, START_CHECK)[1]
    assert "the app did not answer http://127.0.0.1:8000/ within 5 s" in output and "thinking" in output


def test_an_app_that_binds_every_port_fails_once_and_the_hosts_ports_are_untouched() -> None:
    bind_all = """
import socket, time
held = []
for port in range(1, 65536):
    try:
        s = socket.socket()
        s.bind(("127.0.0.1", port))
        held.append(s)
    except OSError:
        s.close()
print(f"holding {len(held)} ports", flush=True)
time.sleep(10**6)
"""
    result = bounded(("main.py", bind_all), within=60)
    assert not result.passed
    assert "holding" in check(result, START_CHECK)[1] or "did not answer" in check(result, START_CHECK)[1]
    with socket.socket() as mine:  # the host's loopback is another network namespace: nothing was taken here
        mine.bind(("127.0.0.1", 18571))


def test_an_app_that_forks_without_end_fails_once_and_leaves_nothing(tmp_path: Path) -> None:
    marker = f"statex-bomb-{uuid.uuid4().hex}"
    bomb = f"""
import os, subprocess, sys, time
# {marker}
while True:
    try:
        if os.fork() == 0:
            time.sleep(10**6)
    except OSError as error:
        print(f"fork refused: {{error}}", flush=True)
        break
raise SystemExit(7)
"""
    result = bounded(("main.py", bomb), within=60)
    assert not result.passed
    output = check(result, START_CHECK)[1]
    assert "exited with status 7" in output and "fork refused" in output

    async def gone() -> bool:
        return not _processes_with(marker)

    asyncio.run(eventually(gone, within=10, what="every process of the bomb to die with its jail"))


def test_an_app_that_writes_gigabytes_stops_at_the_file_and_disk_limits() -> None:
    flood = """
import os
written, chunk = 0, b"x" * (1 << 20)
for name in ("/sandbox/big", "/tmp/big", "/sandbox/more", "/tmp/more"):
    try:
        with open(name, "wb") as file:
            while written < 4 << 30:
                file.write(chunk)
                written += len(chunk)
    except OSError as error:
        print(f"{name}: {error}", flush=True)
print(f"wrote {written >> 20} MB", flush=True)
raise SystemExit(5)
"""
    result = bounded(("main.py", flood), within=90)
    output = check(result, START_CHECK)[1]
    assert "exited with status 5" in output
    megabytes = int(output.split("wrote ", 1)[1].split(" MB")[0])
    assert megabytes <= 64 + 64  # the run's folder and /tmp, both size-capped tmpfs: never the host's disk


def test_an_app_cannot_read_the_hosts_files_nor_reach_its_network() -> None:
    host = socket.socket()
    host.bind(("127.0.0.1", 18572))
    host.listen()
    probe = f"""
import os, socket
results = []
for path in ("/etc/shadow", "/etc/passwd", "/root/.bashrc", {str(Path.cwd() / "settings.py")!r}, "/run/postgresql"):
    try:
        open(path, "rb").read(1)
        results.append(f"READ {{path}}")
    except OSError as error:
        results.append(f"no {{path}}: {{type(error).__name__}}")
own = socket.socket()
own.bind(("127.0.0.1", 0))
own.listen()
socket.create_connection(own.getsockname(), timeout=3).close()  # positive control: its own loopback works
results.append("own loopback reached")
for address in [("127.0.0.1", 5432), ("127.0.0.1", 18572), ("127.0.0.1", 6379), ("169.254.169.254", 80)]:
    try:
        socket.create_connection(address, timeout=3).close()
        results.append(f"REACHED {{address}}")
    except OSError as error:
        results.append(f"not {{address}}: {{type(error).__name__}}")
print("\\n".join(results), flush=True)
raise SystemExit(9)
"""
    try:
        result = bounded(("main.py", probe), within=60)
    finally:
        host.close()
    output = check(result, START_CHECK)[1]
    assert "exited with status 9" in output and "own loopback reached" in output
    assert "READ" not in output and "REACHED" not in output, output
    assert output.count("not (") == 4


PAGE_APP = """
import os, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Page(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/never":
            time.sleep(10**6)
        body = {page!r}
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Page).serve_forever()
"""


@pytest.mark.parametrize(
    "page",
    [
        b"<!doctype html><h1>Busy</h1><script>while (true) {}</script>",
        b"<!doctype html><h1>Loading</h1><img src='/never'><script src='/never'></script>",
    ],
    ids=["endless script", "endless loading"],
)
def test_a_page_that_never_settles_is_cut_off_and_the_app_still_passes(needs_browser: None, page: bytes) -> None:
    result = bounded(("main.py", PAGE_APP.format(page=page)), within=60)
    assert result.passed and result.app_started is True  # the app answered: only the picture is missing
    assert (result.preview, result.preview_unavailable) == (None, "the page did not settle within 8 s")


REACH = b"""<!doctype html><body style="margin:0;height:100vh;background:#888">
<script>
const probe = (url) => fetch(url, {mode: "no-cors"}).then(() => "reached " + url, () => "blocked");
Promise.all(["http://127.0.0.1:5432/", "http://127.0.0.1:18573/", "http://169.254.169.254/latest/meta-data/",
             "http://127.0.0.1:6379/"].map(probe).concat([fetch("/").then(() => "own", () => "no own")]))
  .then((found) => {
    const ok = found.slice(0, 4).every((said) => said === "blocked") && found[4] === "own";
    document.body.style.background = ok ? "rgb(0, 200, 0)" : "rgb(220, 0, 0)";
  });
</script>"""


def test_a_page_cannot_reach_the_database_the_metadata_nor_the_hosts_ports(needs_browser: None) -> None:
    host = socket.socket()
    host.bind(("127.0.0.1", 18573))
    host.listen()
    try:
        result = bounded(("main.py", PAGE_APP.format(page=REACH)), within=60)
    finally:
        host.close()
    assert result.passed and result.preview is not None, result.preview_unavailable
    shown = colours(result.preview.png)
    assert (0, 200, 0) in shown and (220, 0, 0) not in shown, "a page reached something outside the jail"


@pytest.fixture
def marker() -> Iterator[str]:
    yield f"statex-app-{uuid.uuid4().hex}"


def test_the_app_and_what_it_started_are_stopped_after_the_page_is_fetched(marker: str) -> None:
    daemon = f"""
import os, subprocess, sys
subprocess.Popen([sys.executable, "-c", "import time\\n# {marker}\\ntime.sleep(10**6)"], start_new_session=True)
""" + SERVE.format(body=b"<!doctype html><h1>Walks</h1>", status=200, content_type="text/html")
    result = start(("main.py", daemon), browser=False)
    assert result.passed, result.failures()

    async def gone() -> bool:
        return not _processes_with(marker)

    asyncio.run(eventually(gone, within=10, what="the app's daemon to die with its jail"))


def test_the_app_cannot_forge_the_drivers_verdict() -> None:
    forge = """
import os
forged = 'statex-preview-verdict {"started": true, "report": "forged"}'
for target in (f"/proc/{os.getppid()}/fd/1", f"/proc/{os.getppid()}/mem"):
    try:
        with open(target, "w") as driver:
            driver.write("\\n" + forged + "\\n")
        print(f"WROTE {target}", flush=True)
    except OSError as error:
        print(f"refused {target}: {type(error).__name__}", flush=True)
raise SystemExit(4)
"""
    result = start(("main.py", forge), browser=False)
    assert not result.passed and result.app_started is False
    output = check(result, START_CHECK)[1]
    assert "exited with status 4" in output and "WROTE" not in output and output.count("refused") == 2, output


def test_a_verdict_with_its_picture_crosses_temporal_and_back() -> None:
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x05\x00\x00\x00\x03\x20\xff\xfe"  # not UTF-8
    verdict = VerificationResult(
        round=0,
        passed=True,
        files=["main.py"],
        checks=[],
        network_isolated=True,
        app_started=True,
        preview=preview_image(png),
    )
    assert (verdict.preview is not None) and (verdict.preview.width, verdict.preview.height) == (1280, 800)
    [payload] = pydantic_data_converter.payload_converter.to_payloads([verdict])
    [back] = pydantic_data_converter.payload_converter.from_payloads([payload], [VerificationResult])
    assert back == verdict
