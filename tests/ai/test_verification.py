"""Verified prototypes end to end, with the local AI server scripted: generated code is checked in the sandbox by
the real worker (the code agent's files and the tests agent's, together), failing checks go back to the code agent,
and the verdict reaches the status, the rows, the zip and the email."""

from __future__ import annotations

import uuid

from fakes.ai_server import FakeAIServer, RecordedCall
from helpers import eventually, serve
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from ai.support import body_of, calls_of, finished, outbox, service, sign_in, unzip
from api.app import create_app
from models.db import open_session
from models.enums import AIProvider, PrototypeStatus
from models.prompts import FIX, PIPELINE, TESTS
from models.prompts import REVIEW as REVIEWER
from models.tables import Prototype
from settings import Settings
from worker import build_worker
from workflows.prototype import PrototypeWorkflow, workflow_id

IDEA = {"idea": "A command-line calculator that adds two numbers."}
REQUIREMENTS = "# Requirements\n\nAdd two numbers."
PLAN = "# Plan\n\nFiles: calc.py, test_calc.py."
BROKEN = """Here is the code.

```python calc.py
def add(a, b)
    return a + b
```
"""
TESTED = """The tests, written from the plan while the code was written.

```python test_calc.py
from calc import add


def test_add():
    assert add(2, 3) == 5
```
"""
FIXED = """The colon was missing.

```python calc.py
def add(a, b):
    return a + b
```
"""
STILL_BROKEN = """Fixed, I hope.

```python calc.py
def add(a, b) -> int
    return a + b
```
"""
REVIEW = "# Review\n\nFine."


def openai_only(settings: Settings, **overrides: object) -> Settings:
    """Every step asks OpenAI first, so the script below is the order of the calls (but for the tests agent's,
    scripted by its role: it is asked at the same time as the code agent)."""
    return settings.model_copy(update={"ai_fallback_order": ["openai", "azure", "ollama"], **overrides})


def script(fake_ai: FakeAIServer, *answers: str) -> None:
    """The agents' answers in pipeline order, the tests agent's (TESTED) by its role."""
    fake_ai.answer("openai", *answers)
    fake_ai.answer_to(TESTS.role, TESTED)


def asked_as(fake_ai: FakeAIServer, role: str) -> RecordedCall:
    [call] = [call for call in fake_ai.calls if call.body["messages"][0]["content"] == role]
    return call


async def test_code_with_a_syntax_error_is_fixed_in_one_round_and_ships_verified(
    temporal: Client, engine: AsyncEngine, ai_settings: Settings, fake_ai: FakeAIServer
) -> None:
    script(fake_ai, REQUIREMENTS, PLAN, BROKEN, FIXED, REVIEW)
    settings = openai_only(ai_settings)
    async with service(temporal, engine, settings) as api:
        account = await sign_in(api, engine)
        accepted = await api.post("/api/ai/prototype", json=IDEA, headers=account["headers"])
        assert accepted.status_code == 202, accepted.text
        prototype_id = accepted.json()["prototype_id"]
        done = await finished(api, temporal, account, prototype_id)
        download = await api.get(done["download_url"], headers=account["headers"])

    assert (done["status"], done["verified"], done["fix_rounds"]) == ("COMPLETED", True, 1), done
    rows = await calls_of(engine, prototype_id)
    assert [(row.step, row.tier) for row in rows] == [
        ("requirements", AIProvider.OPENAI),
        ("plan", AIProvider.OPENAI),
        ("code", AIProvider.OPENAI),
        ("tests", AIProvider.OPENAI),
        ("fix-1", AIProvider.OPENAI),
        ("review", AIProvider.OPENAI),
    ]
    assert all(row.cost_usd_micros == 8755 for row in rows)  # the fix round is costed like any call
    assert done["cost_usd_micros"] == 6 * 8755
    fix_prompt = asked_as(fake_ai, FIX.role).prompt
    assert "compile calc.py:\nSyntaxError" in fix_prompt and "def add(a, b)\n" in fix_prompt
    assert "def test_add():" in fix_prompt  # the fix round sees the tests too, and may change them
    review_prompt = asked_as(fake_ai, REVIEWER.role).prompt
    assert "The colon was missing." in review_prompt  # the reviewer reads the fixed code
    assert "def test_add():" in review_prompt  # and its tests

    files = unzip(download.content)
    assert files["code/calc.py"] == "def add(a, b):\n    return a + b\n"  # the fix replaced the file
    assert files["TESTS.md"] == TESTED and "from calc import add" in files["code/test_calc.py"]
    assert "**verified: the code passed every check in the sandbox after 1 fix round.**" in files["VERIFICATION.md"]
    assert "| pytest test_calc.py | passed |" in files["VERIFICATION.md"]
    assert "FIX-1.md" in files
    async with open_session(engine) as db:
        row = await db.get(Prototype, uuid.UUID(prototype_id))
        assert row is not None and (row.verified, row.fix_rounds) == (True, 1)
        assert row.verification is not None and row.verification["passed"] is True
    [email] = outbox(settings)
    assert "Verified: the code passed every check in the sandbox after 1 fix round." in body_of(email)


async def test_code_still_failing_after_the_last_round_completes_unverified_and_says_so(
    temporal: Client, engine: AsyncEngine, ai_settings: Settings, fake_ai: FakeAIServer
) -> None:
    script(fake_ai, REQUIREMENTS, PLAN, BROKEN, STILL_BROKEN, REVIEW)
    settings = openai_only(ai_settings, prototype_fix_rounds=1)
    async with service(temporal, engine, settings) as api:
        account = await sign_in(api, engine)
        accepted = await api.post("/api/ai/prototype", json=IDEA, headers=account["headers"])
        prototype_id = accepted.json()["prototype_id"]
        done = await finished(api, temporal, account, prototype_id)
        download = await api.get(done["download_url"], headers=account["headers"])

    assert (done["status"], done["verified"], done["fix_rounds"]) == ("COMPLETED", False, 1), done
    assert [row.step for row in await calls_of(engine, prototype_id)] == [
        "requirements",
        "plan",
        "code",
        "tests",
        "fix-1",
        "review",
    ]
    report = unzip(download.content)["VERIFICATION.md"]
    assert "**NOT verified: the code still fails checks in the sandbox after 1 fix round.**" in report
    assert "| compile calc.py | FAILED |" in report and "SyntaxError" in report
    [email] = outbox(settings)
    assert "NOT verified: the code still fails checks in the sandbox after 1 fix round." in body_of(email)


async def test_the_worker_stopped_between_a_failed_check_and_its_fix_round_finishes_asking_nothing_twice(
    temporal: Client, engine: AsyncEngine, ai_settings: Settings, fake_ai: FakeAIServer
) -> None:
    fake_ai.answer("openai", REQUIREMENTS, PLAN, BROKEN, REVIEW)
    fake_ai.answer_to(TESTS.role, TESTED)
    fake_ai.answer_to(FIX.role, FIXED, FIXED)  # the interrupted attempt and its retry
    fake_ai.slow_to(FIX.role, 5.0)  # the fix round's first attempt is still waiting when the worker stops
    settings = openai_only(ai_settings)

    def asked(role: str) -> int:
        return sum(call.body["messages"][0]["content"] == role for call in list(fake_ai.calls))

    async def fix_asked() -> bool:
        return asked(FIX.role) > 0

    async with serve(create_app(settings, temporal=temporal)) as api:
        account = await sign_in(api, engine)
        # No sticky cache, so the next worker picks the workflow up at once rather than after a timeout.
        async with build_worker(temporal, settings, engine, max_cached_workflows=0):
            accepted = await api.post("/api/ai/prototype", json=IDEA, headers=account["headers"])
            assert accepted.status_code == 202, accepted.text
            prototype_id = accepted.json()["prototype_id"]
            await eventually(fix_asked, within=60, what="the fix round's call, after the failed check")
        async with open_session(engine) as db:
            halfway = await db.get(Prototype, uuid.UUID(prototype_id))
        assert halfway is not None and (halfway.status, halfway.current_step) == (PrototypeStatus.RUNNING, "code")
        assert [row.step for row in await calls_of(engine, prototype_id)] == ["requirements", "plan", "code", "tests"]
        handle = temporal.get_workflow_handle_for(PrototypeWorkflow.run, workflow_id(uuid.UUID(prototype_id)))
        async with build_worker(temporal, settings, engine):
            outcome = await handle.result()
            done = await finished(api, temporal, account, prototype_id)

    assert outcome.status == PrototypeStatus.COMPLETED and (done["verified"], done["fix_rounds"]) == (True, 1), done
    assert asked(FIX.role) == 2  # the interrupted attempt, then the retry on the new worker
    assert all(asked(step.role) == 1 for step in PIPELINE)  # nothing recorded before the stop was asked again
    rows = await calls_of(engine, prototype_id)
    assert [row.step for row in rows] == ["requirements", "plan", "code", "tests", "fix-1", "review"]
    assert [email.name for email in outbox(settings)] == [f"prototype-{prototype_id}-ready.eml"]
    scheduled = [
        event.activity_task_scheduled_event_attributes.activity_type.name
        async for event in handle.fetch_history_events()
        if event.HasField("activity_task_scheduled_event_attributes")
    ]
    assert scheduled.count("verify_code") == 2  # the failed check is not run again after the restart: round 0, 1


async def test_without_a_sandbox_the_prototype_completes_not_verified_spending_no_fix_round(
    temporal: Client, engine: AsyncEngine, ai_settings: Settings, fake_ai: FakeAIServer
) -> None:
    """No bubblewrap on the worker: nothing is run, and broken code is not sent to a fix round it could not
    check either; the customer is told plainly."""
    script(fake_ai, REQUIREMENTS, PLAN, BROKEN, REVIEW)
    settings = openai_only(ai_settings, sandbox_bwrap="/nonexistent/bwrap")
    async with service(temporal, engine, settings) as api:
        account = await sign_in(api, engine)
        accepted = await api.post("/api/ai/prototype", json=IDEA, headers=account["headers"])
        prototype_id = accepted.json()["prototype_id"]
        done = await finished(api, temporal, account, prototype_id)
        download = await api.get(done["download_url"], headers=account["headers"])
        capabilities = (await api.get("/api/capabilities")).json()["verification"]

    assert (done["status"], done["verified"], done["fix_rounds"]) == ("COMPLETED", False, 0), done
    assert capabilities["available"] is False and "bubblewrap not found" in capabilities["reason"]
    assert [row.step for row in await calls_of(engine, prototype_id)] == [
        "requirements",
        "plan",
        "code",
        "tests",
        "review",
    ]
    report = unzip(download.content)["VERIFICATION.md"]
    assert "**NOT verified: sandbox unavailable.**" in report and "The code was NOT run" in report
    assert "bubblewrap not found" in report
    [email] = outbox(settings)
    assert "NOT verified: sandbox unavailable." in body_of(email)


WEB_PLAN = "# Plan\n\nFiles: main.py (the start page), test_calc.py."
NOT_STARTING = """Here is the app.

```python main.py
import os

PORT = int(os.environ["WALKS_PORT"])  # the wrong variable: the sandbox sets PORT
```
"""
STARTING = """It now reads PORT.

```python main.py
import os
from http.server import BaseHTTPRequestHandler, HTTPServer


class Page(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"<!doctype html><h1>Calculator</h1>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Page).serve_forever()
```

```python calc.py
def add(a, b):
    return a + b
```
"""


async def test_an_app_that_does_not_start_goes_through_the_fix_loop_with_what_happened(
    temporal: Client, engine: AsyncEngine, ai_settings: Settings, fake_ai: FakeAIServer
) -> None:
    script(fake_ai, REQUIREMENTS, WEB_PLAN, FIXED + NOT_STARTING, STARTING, REVIEW)
    settings = openai_only(ai_settings, previews_enabled=False)
    async with service(temporal, engine, settings) as api:
        account = await sign_in(api, engine)
        accepted = await api.post("/api/ai/prototype", json=IDEA, headers=account["headers"])
        assert accepted.status_code == 202, accepted.text
        done = await finished(api, temporal, account, accepted.json()["prototype_id"])

    assert (done["status"], done["verified"], done["fix_rounds"]) == ("COMPLETED", True, 1), done
    fix_prompt = asked_as(fake_ai, FIX.role).prompt
    assert "start the app and fetch /:\nthe app exited with status 1 before its main page answered" in fix_prompt
    assert "KeyError: 'WALKS_PORT'" in fix_prompt  # the app's last lines, quoted as untrusted output
    async with open_session(engine) as db:
        row = await db.get(Prototype, uuid.UUID(accepted.json()["prototype_id"]))
        assert row is not None and row.verification is not None
        assert (row.verification["app_started"], row.verification["preview"]) == (True, None)
        assert row.verification["preview_unavailable"] == "previews are turned off (PREVIEWS_ENABLED=false)"
