"""The generated app, started: after its checks pass, the sandbox starts the app by its entry point, fetches its
main page, and has a headless browser take a picture of it, all in ONE jail (the same bubblewrap jail, network
namespace and limits as the checks: activities/sandbox.py), which then dies with everything the app started.

The entry point is the one the code step is asked for (models/prompts.py): `python main.py` at the project's root,
serving its main page at / on 127.0.0.1, at the port in the PORT environment variable. Code with no main.py is
not started (a library or a command-line tool has no page): the verdict says why there is no picture.

Inside the jail a driver (`_DRIVER`, run by the sandbox's interpreter):
- makes itself undumpable, so the app (the same user in the jail) can neither read nor write its files in /proc
  (its verdict, on its standard output, is the driver's alone);
- starts the app with per-process limits of its own (address space, CPU seconds, processes, file size), its
  output to a file in the jail's size-capped /tmp, and waits at most `start_seconds` for / to answer (a 2xx with
  a non-empty body: started; anything else, or an app that exits, is a failed check, with its exit status, the
  HTTP status and the last lines it printed);
- when the page is HTML and a browser is given, runs it headless at `window` size with a virtual time budget
  (timers and loading are fast-forwarded, then it shoots) and a hard timeout (a page that never settles, an
  endless script: the browser's process group is killed), and prints the PNG (at most PREVIEW_MAX_BYTES) with
  its verdict: one JSON line, the last it prints.
The browser runs with `--no-sandbox`: Chromium's own sandbox needs user namespaces, which the jail forbids
(`--disable-userns`); the jail is the isolation, and a stronger one (no network but its own loopback, no host
file but the read-only system libraries, fonts and the browser, an unprivileged user, every capability dropped).
A page reaches only the app: the API, the database and the cloud metadata address are outside the jail's network.
The browser needs more address space than a check (V8 reserves terabytes of it it never uses), so the preview's
jail has no RLIMIT_AS of its own: the app gets the check's, the browser's JavaScript heap is capped by a V8
flag, and the run's cgroup bounds the memory of the whole (where the worker has cgroups).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

from models.messages.prototypes import PREVIEW_MAX_BYTES, PreviewImage, SandboxCheck

ENTRY_POINT = "main.py"
"""The file `python main.py` starts: the app's documented entry point (the code step is asked for it)."""
APP_PORT = 8000
"""The app's port inside the jail (its own network namespace: nothing else listens there)."""
START_CHECK = "start the app and fetch /"
VERDICT = "statex-preview-verdict "
"""What the driver's verdict line starts with."""
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BROWSER_FILES = ("/usr/share/fonts", "/usr/share/fontconfig", "/etc/fonts", "/var/cache/fontconfig")
"""What of the host the browser reads besides the system libraries (bound read-only when they exist)."""
OUTPUT_TAIL_CHARS = 2_000
"""The last characters of the app's output a failed start reports."""


@dataclass(frozen=True)
class PreviewLimits:
    start_seconds: float = 15.0
    """The app has this long to answer its main page."""
    shot_seconds: float = 20.0
    """The browser has this long to load and shoot the page."""
    virtual_time_ms: int = 3_000
    """The page's timers and loading, fast-forwarded, for at most this much of its own time before the shot."""
    window: tuple[int, int] = (1280, 800)
    browser_processes: int = 256
    """Processes (threads) of the preview's whole jail: Chromium runs a few dozen threads per process."""
    script_heap_mb: int = 256
    """The page's JavaScript heap at most (V8's old space)."""


@dataclass(frozen=True)
class Browser:
    """The headless browser the jail runs: its binary (not a launcher script: the jail has no shell) and the
    folders of the host it needs, bound read-only."""

    executable: str
    binds: tuple[str, ...]

    @classmethod
    def find(cls, path: str) -> Browser | str:
        """The browser at `path`, or why there is none. Debian's /usr/bin/chromium is a shell script that runs
        /usr/lib/chromium/chromium: the binary it names is taken."""
        real = os.path.realpath(path)
        if not os.path.isfile(real) or not os.access(real, os.X_OK):
            return f"no browser at {path} (install Debian's chromium, or set PREVIEW_BROWSER)"
        with open(real, "rb") as file:
            script = file.read(2) == b"#!"
        if script:
            name = Path(real).name
            binary = f"/usr/lib/{name}/{name}"
            if not os.access(binary, os.X_OK):
                return f"{path} is a launcher script and {binary} is missing: set PREVIEW_BROWSER to the binary"
            real = binary
        home = str(Path(real).parent)
        binds = tuple(folder for folder in (home, *BROWSER_FILES) if os.path.isdir(folder))
        return cls(real, binds)


@dataclass(frozen=True)
class Started:
    """What starting the app came to: the check, and, when it started, its picture or why there is none;
    `seconds`: how long the app took to listen, its page to answer, the browser to shoot it."""

    check: SandboxCheck
    app_started: bool
    preview: PreviewImage | None = None
    preview_unavailable: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def driver_arguments(browser: Browser | str, limits: PreviewLimits, app_limits: dict[str, int]) -> list[str]:
    """`python -I -c <driver> <settings>`: what the jail's interpreter runs to start the app and, with a browser
    (else why there is none), shoot its page. `app_limits`: resource limits by name, set on the app's process."""
    settings: dict[str, object] = {
        "entry": [ENTRY_POINT],
        "port": APP_PORT,
        "start_seconds": limits.start_seconds,
        "shot_seconds": limits.shot_seconds,
        "browser": browser.executable if isinstance(browser, Browser) else None,
        "no_browser": browser if isinstance(browser, str) else None,
        "browser_flags": browser_flags(limits) if isinstance(browser, Browser) else [],
        "max_png": PREVIEW_MAX_BYTES,
        "app_limits": app_limits,
        "tail": OUTPUT_TAIL_CHARS,
    }
    return ["-I", "-c", _DRIVER, json.dumps(settings)]


def browser_flags(limits: PreviewLimits) -> list[str]:
    width, height = limits.window
    return [
        "--headless",
        "--no-sandbox",  # its own sandbox needs user namespaces, which the jail forbids: the jail isolates it
        "--disable-gpu",
        "--disable-dev-shm-usage",  # shared memory in the jail's /tmp, not its small /dev/shm
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--no-default-browser-check",
        "--hide-scrollbars",
        "--mute-audio",
        f"--js-flags=--max-old-space-size={limits.script_heap_mb}",
        f"--window-size={width},{height}",
        f"--virtual-time-budget={limits.virtual_time_ms}",
    ]


def started(output: str, killed: str | None) -> Started:
    """The driver's verdict, read from the jail's output (the last line that is one)."""
    verdict: dict[str, object] | None = None
    for line in reversed(output.splitlines()):
        if line.startswith(VERDICT):
            try:
                verdict = json.loads(line[len(VERDICT) :])
            except ValueError:
                verdict = None
            break
    if not isinstance(verdict, dict):
        why = f"killed at {killed}" if killed else "the jail ended without a verdict"
        return Started(SandboxCheck(name=START_CHECK, passed=False, output=f"{why}\n{output}"), app_started=False)
    report = str(verdict.get("report", ""))
    timings = verdict.get("timings")
    seconds = {str(name): float(value) for name, value in timings.items()} if isinstance(timings, dict) else {}
    if not verdict.get("started"):
        return Started(SandboxCheck(name=START_CHECK, passed=False, output=report), False, seconds=seconds)
    check = SandboxCheck(name=START_CHECK, passed=True, output=report)
    png = verdict.get("png")
    if not isinstance(png, str):
        why = str(verdict.get("no_preview") or "no picture was taken")
        return Started(check, True, preview_unavailable=why, seconds=seconds)
    try:
        image = preview_image(base64.b64decode(png, validate=True))
    except (ValueError, binascii.Error) as error:
        why = f"the browser's picture is not usable ({error})"
        return Started(check, True, preview_unavailable=why, seconds=seconds)
    return Started(check, True, preview=image, seconds=seconds)


def preview_image(png: bytes) -> PreviewImage:
    """The picture with its size, read from the PNG's header; ValueError when it is not a PNG or too large."""
    if len(png) > PREVIEW_MAX_BYTES:
        raise ValueError(f"{len(png)} bytes, more than {PREVIEW_MAX_BYTES}")
    if len(png) < 24 or not png.startswith(PNG_SIGNATURE) or png[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    width, height = struct.unpack(">II", png[16:24])
    return PreviewImage(png=png, width=width, height=height)


# Run in the jail with `python -I -c`, its settings (JSON) as its argument. Prints its verdict as the last line.
_DRIVER = r"""
import base64, ctypes, json, os, resource, signal, subprocess, sys, time, urllib.error, urllib.request

ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: the app may not reach this process's files in /proc
settings = json.loads(sys.argv[1])
port, tail = settings["port"], settings["tail"]
verdict = {"started": False}


def app_limits():
    limits = settings["app_limits"]
    for name, value in limits.items():
        resource.setrlimit(getattr(resource, name), (value, value))


def last(path):
    try:
        with open(path, "rb") as file:
            size = file.seek(0, 2)
            file.seek(max(0, size - tail))
            return file.read().decode("utf-8", "replace")
    except OSError:
        return ""


def stop(process):
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()


def fetch(url, timeout):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as answer:
            return answer.status, answer.headers.get_content_type(), answer.read(1_000_000)
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get_content_type(), error.read(1_000_000)


environment = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", ""), "LANG": "C.UTF-8",
               "PORT": str(port), "HOST": "127.0.0.1", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}
began = time.monotonic()
with open("/tmp/app.log", "wb") as log:
    app = subprocess.Popen([sys.executable, *settings["entry"]], env=environment, stdin=subprocess.DEVNULL,
                           stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=app_limits)
deadline = began + settings["start_seconds"]
answer, problem, asked = None, None, began
while answer is None and problem is None:
    code = app.poll()
    if code is not None:
        problem = f"the app exited with status {code} before its main page answered"
        break
    if time.monotonic() > deadline:
        problem = f"the app did not answer http://127.0.0.1:{port}/ within {settings['start_seconds']:g} s"
        break
    asked = time.monotonic()
    try:
        answer = fetch(f"http://127.0.0.1:{port}/", max(0.1, min(5.0, deadline - asked)))
    except (OSError, ValueError):  # not listening yet, reset, a malformed answer
        time.sleep(0.1)
verdict["timings"] = {"start": asked - began, "page": time.monotonic() - asked}
if answer is not None:
    status, content_type, body = answer
    if 200 <= status < 300 and body.strip():
        verdict["started"] = True
        report = f"GET / answered {status} ({content_type}, {len(body)} bytes)"
    else:
        report = f"GET / answered HTTP status {status} ({content_type}) with {len(body.strip())} bytes of content"
else:
    report = problem
if not verdict["started"]:
    report += "\nThe app's last output:\n" + last("/tmp/app.log")
verdict["report"] = report

if verdict["started"]:
    html = content_type in ("text/html", "application/xhtml+xml") or body.lstrip()[:15].lower().startswith(
        (b"<!doctype html", b"<html"))
    if not html:
        verdict["no_preview"] = f"the app's main page is not a web page ({content_type})"
    elif settings["browser"] is None:
        verdict["no_preview"] = settings["no_browser"]
    else:
        shot_began = time.monotonic()
        with open("/tmp/browser.log", "wb") as log:
            browser = subprocess.Popen(
                [settings["browser"], *settings["browser_flags"], "--user-data-dir=/tmp/browser",
                 "--screenshot=/tmp/preview.png", f"http://127.0.0.1:{port}/"],
                env={**environment, "HOME": "/tmp"}, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
            try:
                code = browser.wait(timeout=settings["shot_seconds"])
            except subprocess.TimeoutExpired:
                code = None
            stop(browser)
        verdict["timings"]["screenshot"] = time.monotonic() - shot_began
        try:
            png = open("/tmp/preview.png", "rb").read(settings["max_png"] + 1)
        except OSError:
            png = b""
        if code is None:
            verdict["no_preview"] = f"the page did not settle within {settings['shot_seconds']:g} s"
        elif not png:
            words = " ".join(last("/tmp/browser.log").split()[-40:])
            verdict["no_preview"] = f"the browser took no picture (exit status {code}): {words}"
        elif len(png) > settings["max_png"]:
            verdict["no_preview"] = f"the picture is larger than {settings['max_png']} bytes"
        else:
            verdict["png"] = base64.b64encode(png).decode()
stop(app)
print("\n" + VERDICT + json.dumps(verdict), flush=True)
""".replace("VERDICT", repr(VERDICT))
