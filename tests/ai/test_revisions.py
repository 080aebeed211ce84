"""POST /api/prototypes/{id}/revisions end to end, with the local AI server scripted: a revision builds on the
prototype's files, changes only what the feedback asked for, is checked in the sandbox, zipped and emailed, with
its own rows and cost; someone else's prototype is not found, and one still under way cannot be revised."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from fakes.ai_server import FakeAIServer
from helpers import eventually, serve
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select
from temporalio.client import Client

from ai.support import body_of, calls_of, finished, outbox, service, sign_in, unzip
from api.app import create_app
from models.db import open_session
from models.enums import AIProvider
from models.prompts import PIPELINE, REVISE
from models.prompts import TESTS as TESTS_AGENT
from models.tables import Prototype, PrototypeRevision
from settings import Settings
from worker import build_worker
from workflows.revision import revision_file_id, workflow_id

IDEA = {"idea": "A command-line calculator that adds two numbers."}
CALC = "def add(a, b):\n    return a + b\n"
TESTS = "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"
CODE = f"Here is the code.\n\n```python calc.py\n{CALC}```\n\n```python test_calc.py\n{TESTS}```\n"
REVISED_CALC = "def add(a, b):\n    return a + b\n\n\ndef subtract(a, b):\n    return a - b\n"
REVISED = f"Added subtraction; the tests are unchanged.\n\n```python calc.py\n{REVISED_CALC}```\n"
FEEDBACK = {"feedback": "Please add a subtract function next to add."}
COST = 8755  # what the local server's token counts cost on the price table, per call


def scripted(settings: Settings) -> Settings:
    """OpenAI first for every step, so the script is the order of the calls; room for every request here."""
    return settings.model_copy(update={"ai_fallback_order": ["openai", "azure", "ollama"], "rate_limit_ai": "20/day"})


async def revised(api: httpx.AsyncClient, temporal: Client, account: dict[str, Any], status_url: str) -> Any:
    """Wait for the revision's workflow (the email comes last), then read its status once: polling the URL until
    it ends could spend the day's request limit on a slow machine."""
    prototype_id, number = status_url.rstrip("/").split("/")[-3::2]
    await temporal.get_workflow_handle(workflow_id(uuid.UUID(prototype_id), int(number))).result()
    answer = await api.get(status_url, headers=account["headers"])
    assert answer.status_code == 200, answer.text
    view = answer.json()
    assert view["status"] in ("COMPLETED", "FAILED"), view
    return view


async def test_a_revision_changes_only_what_the_feedback_asked_for_with_its_own_rows_and_cost(
    temporal: Client, engine: AsyncEngine, ai_settings: Settings, fake_ai: FakeAIServer
) -> None:
    fake_ai.answer("openai", "# Requirements", "# Plan\n\ncalc.py, test_calc.py", CODE, "# Review", REVISED)
    fake_ai.answer_to(TESTS_AGENT.role, "The code's own test covers it.")  # asked alongside the code agent
    settings = scripted(ai_settings)
    async with service(temporal, engine, settings) as api:
        account = await sign_in(api, engine)
        accepted = await api.post("/api/ai/prototype", json=IDEA, headers=account["headers"])
        prototype_id = accepted.json()["prototype_id"]
        done = await finished(api, temporal, account, prototype_id)
        assert (done["status"], done["revisions"]) == ("COMPLETED", []), done

        asked = await api.post(f"/api/prototypes/{prototype_id}/revisions", json=FEEDBACK, headers=account["headers"])
        assert asked.status_code == 202, asked.text
        status_url = f"/api/prototypes/{prototype_id}/revisions/1"
        assert (asked.json()["number"], asked.json()["status_url"], asked.headers["Location"]) == (
            1,
            status_url,
            status_url,
        )
        assert asked.json()["workflow_id"] == f"prototype-{prototype_id}-revision-1"
        revision = await revised(api, temporal, account, status_url)
        download = await api.get(revision["download_url"], headers=account["headers"])
        assert download.status_code == 200, download.text
        after = (await api.get(f"/api/prototypes/{prototype_id}", headers=account["headers"])).json()
        original = await api.get(done["download_url"], headers=account["headers"])

    assert (revision["status"], revision["verified"], revision["fix_rounds"]) == ("COMPLETED", True, 0), revision
    assert revision["file_id"] == str(revision_file_id(uuid.UUID(prototype_id), 1)) != done["file_id"]
    assert (revision["cost_usd_micros"], revision["feedback"]) == (COST, FEEDBACK["feedback"])
    [listed] = after["revisions"]
    assert {key: listed[key] for key in ("number", "status", "cost_usd_micros", "file_id", "verified")} == {
        "number": 1,
        "status": "COMPLETED",
        "cost_usd_micros": COST,
        "file_id": revision["file_id"],
        "verified": True,
    }
    assert after["cost_usd_micros"] == len(PIPELINE) * COST  # the prototype's own cost is unchanged

    [revise_prompt] = [call.prompt for call in fake_ai.calls if REVISE.role in call.prompt]
    assert FEEDBACK["feedback"] in revise_prompt and TESTS in revise_prompt and CALC in revise_prompt
    files = unzip(download.content)
    assert files["code/calc.py"] == REVISED_CALC  # changed as asked
    assert files["code/test_calc.py"] == TESTS  # kept from before, though the answer left it out
    assert "| pytest test_calc.py | passed |" in files["VERIFICATION.md"]
    assert FEEDBACK["feedback"] in files["README.md"] and files["REVISION.md"] == REVISED
    assert unzip(original.content)["code/calc.py"] == CALC  # the prototype's own zip is as it was

    rows = await calls_of(engine, prototype_id)
    assert [(row.step, row.tier, row.cost_usd_micros) for row in rows][len(PIPELINE) :] == [
        ("revision-1-revise", AIProvider.OPENAI, COST)
    ]
    assert rows[len(PIPELINE)].call_key == f"prototype-{prototype_id}-revision-1-revise"
    async with open_session(engine) as db:
        statement = select(PrototypeRevision).where(PrototypeRevision.prototype_id == uuid.UUID(prototype_id))
        [row] = (await db.exec(statement)).all()
    assert (row.number, row.status, row.cost_usd_micros, row.user_id) == (1, "COMPLETED", COST, account["id"])
    assert row.files == {"calc.py": REVISED_CALC, "test_calc.py": TESTS}  # what revision 2 would build on
    ready = [body for body in map(body_of, outbox(settings)) if "revision 1 of your prototype" in body]
    assert len(ready) == 1 and f"/api/files/{revision['file_id']}?token=" in ready[0]


async def test_someone_elses_prototype_is_not_found_and_one_under_way_cannot_be_revised(
    temporal: Client, engine: AsyncEngine, ai_settings: Settings
) -> None:
    settings = scripted(ai_settings)
    async with service(temporal, engine, settings) as api:
        alice, bob = await sign_in(api, engine), await sign_in(api, engine)
        waiting = await api.post(
            "/api/ai/prototype", json={**IDEA, "review_requirements": True}, headers=alice["headers"]
        )
        prototype_id = waiting.json()["prototype_id"]

        async def awaiting() -> bool | None:
            view = (await api.get(f"/api/prototypes/{prototype_id}", headers=alice["headers"])).json()
            # The status URL answers the workflow's live status; the revision's check reads the row, which the
            # workflow's activity writes a moment later.
            async with open_session(engine) as db:
                row = await db.get(Prototype, uuid.UUID(prototype_id))
            return (view["status"] == row.status == "AWAITING_APPROVAL") if row is not None else None

        await eventually(awaiting, within=60, what="the prototype to wait for approval")
        url = f"/api/prototypes/{prototype_id}/revisions"
        foreign = await api.post(url, json=FEEDBACK, headers=bob["headers"])
        unknown = await api.post(f"/api/prototypes/{uuid.uuid4()}/revisions", json=FEEDBACK, headers=alice["headers"])
        under_way = await api.post(url, json=FEEDBACK, headers=alice["headers"])
        control = await api.post(url, json={"feedback": "bad\x00input"}, headers=alice["headers"])
        missing = await api.get(f"{url}/1", headers=alice["headers"])
        peeking = await api.get(f"{url}/1", headers=bob["headers"])

    assert (foreign.status_code, unknown.status_code) == (404, 404), foreign.text
    assert under_way.status_code == 409 and "AWAITING_APPROVAL" in under_way.json()["error"], under_way.text
    assert control.status_code == 422
    assert control.json()["details"] == [  # once, though the route and its provider check both read the body
        {"field": "body.feedback", "message": "must not contain control characters such as NUL"}
    ], control.text
    assert (missing.status_code, peeking.status_code) == (404, 404)
    async with open_session(engine) as db:
        statement = select(PrototypeRevision).where(PrototypeRevision.prototype_id == uuid.UUID(prototype_id))
        assert (await db.exec(statement)).all() == []


async def test_a_retried_revision_gets_the_first_and_no_second_starts_while_it_is_under_way(
    temporal: Client, engine: AsyncEngine, settings: Settings
) -> None:
    """The offline provider; no worker while the revisions are asked for, so revision 1 stays under way."""
    settings = settings.model_copy(update={"rate_limit_ai": "20/day"})
    async with serve(create_app(settings, temporal=temporal)) as api:
        account = await sign_in(api, engine)
        async with build_worker(temporal, settings, engine):
            prototype_id = (await api.post("/api/ai/prototype", json=IDEA, headers=account["headers"])).json()[
                "prototype_id"
            ]
            await finished(api, temporal, account, prototype_id)
        url = f"/api/prototypes/{prototype_id}/revisions"
        keyed = {**account["headers"], "Idempotency-Key": "revise-once"}
        # ten at once with one key: whichever is first, the others are its retries while it is in flight
        racing = await asyncio.gather(*(api.post(url, json=FEEDBACK, headers=keyed) for _ in range(10)))
        first = racing[0]
        retried = await api.post(url, json=FEEDBACK, headers=keyed)
        another = await api.post(url, json={"feedback": "Make it multiply too."}, headers=account["headers"])
        reused_key = await api.post(url, json={"feedback": "Make it multiply too."}, headers=keyed)
        async with build_worker(temporal, settings, engine):
            revision = await revised(api, temporal, account, first.json()["status_url"])

    assert (first.status_code, retried.status_code) == (202, 202), retried.text
    assert retried.json() == first.json() and first.json()["number"] == 1
    for answer in racing:  # the same revision each time, never 409 "still under way" nor a second one
        assert answer.status_code == 202, answer.text
        assert answer.json() == first.json()
    assert another.status_code == 409 and "still under way" in another.json()["error"], another.text
    assert reused_key.status_code == 422, reused_key.text
    assert (revision["number"], revision["status"]) == (1, "COMPLETED"), revision
    async with open_session(engine) as db:
        statement = select(PrototypeRevision).where(PrototypeRevision.prototype_id == uuid.UUID(prototype_id))
        assert [row.number for row in (await db.exec(statement)).all()] == [1]
