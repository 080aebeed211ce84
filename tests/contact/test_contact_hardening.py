"""The contact form and its emails against hostile input: nothing typed reaches a
header, a message that cannot be built ends its workflow, and the confirmation echoes nothing."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
import pytest
from conftest import AppFactory
from helpers import bearer, register_and_login, serve
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from test_contact import MESSAGE, outbox_messages, submit

from models.db import open_session
from models.enums import ContactStatus
from models.messages.email import EmailMessage
from models.tables import Contact
from settings import Settings
from worker import build_worker

LINE_BREAKERS = {"CR": "\r", "LF": "\n", "U+2028": "\u2028", "U+2029": "\u2029", "NUL": "\x00", "RLO": "\u202e"}
HEADER_FIELDS = {
    "name": lambda c: f"Ada{c}Bcc: victim@example.com",
    "email": lambda c: f"ada@example.com{c}Bcc: victim@example.com",
    "subject": lambda c: f"Hello{c}Bcc: victim@example.com",
    "phone": lambda c: f"+420 123{c}456",
}


@pytest.mark.parametrize("character", LINE_BREAKERS.values(), ids=LINE_BREAKERS.keys())
@pytest.mark.parametrize("field", HEADER_FIELDS)
async def test_a_line_or_control_character_in_a_header_field_is_refused(
    api: httpx.AsyncClient, field: str, character: str
) -> None:
    for value in (HEADER_FIELDS[field](character), f"{HEADER_FIELDS[field]('')}{character}"):  # inside, and trailing
        response = await api.post("/api/contact", json={**MESSAGE, field: value})
        assert response.status_code == 422, (field, value, response.text)
        assert f"body.{field}" in response.text


@pytest.mark.parametrize("character", ["\x00", "\x1b", "\x07", "\x85"], ids=["NUL", "ESC", "BEL", "NEL"])
async def test_a_control_character_in_the_message_is_refused(api: httpx.AsyncClient, character: str) -> None:
    response = await api.post("/api/contact", json={**MESSAGE, "message": f"Hello{character}there"})
    assert response.status_code == 422 and "body.message" in response.text


async def test_the_message_keeps_its_lines(api: httpx.AsyncClient, worker: object, temporal: Client) -> None:
    handle = await submit(api, temporal, {**MESSAGE, "message": "Line one\r\nLine two\n\tindented"})
    assert (await handle.result()).team_notified


async def test_nul_is_refused_in_every_other_text_field(make_app: AppFactory) -> None:
    async with serve(make_app(rate_limit_enabled=False)) as api:
        account = await register_and_login(api)
        headers = bearer(account["access_token"])
        refused: list[tuple[str, dict[str, Any]]] = [
            ("/auth/register", {"email": "nul@example.com", "password": "correct horse\x00", "name": "Ada"}),
            ("/auth/register", {"email": "nul@example.com", "password": "correct horse", "name": "Ada\x00"}),
            ("/auth/register", {"email": "nul@example.com", "password": "correct horse", "name": "Ada\nBcc: x"}),
            ("/auth/login", {"email": account["email"], "password": f"{account['password']}\x00"}),
            ("/auth/refresh", {"refresh_token": f"{account['refresh_token']}\x00"}),
            ("/api/ai/chat", {"message": "Hello\x00"}),
            ("/api/ai/prototype", {"idea": "An app\x00"}),
        ]
        for path, body in refused:
            response = await api.post(path, json=body, headers=headers)
            assert response.status_code == 422, (path, body, response.text)


class UnbuildableMailer:
    """Raises what the email package raises for a header it cannot write, and counts the attempts."""

    name = "outbox"

    def __init__(self) -> None:
        self.attempts: Counter[str] = Counter()

    async def deliver(self, message: EmailMessage) -> str | None:
        self.attempts[message.message_id] += 1
        raise ValueError("Header values may not contain linefeed or carriage return characters")

    async def aclose(self) -> None:
        pass


async def test_a_contact_whose_email_cannot_be_built_ends_failed_after_one_attempt(
    api: httpx.AsyncClient, temporal: Client, settings: Settings, engine: AsyncEngine
) -> None:
    mailer = UnbuildableMailer()
    async with build_worker(temporal, settings, engine, mailer=mailer):
        handle = await submit(api, temporal, MESSAGE)
        progress = await asyncio.wait_for(handle.result(), 30)  # ends: no retry for ever
    assert not progress.team_notified and not progress.sender_confirmed
    assert progress.failure == "the team's email could not be sent"
    assert mailer.attempts == Counter({f"contact-{progress.contact_id}-team": 1})  # non-retryable
    async with open_session(engine) as db:
        contact = await db.get(Contact, progress.contact_id)
    assert contact is not None and contact.status == ContactStatus.FAILED
    assert contact.message == MESSAGE["message"]  # kept for the team to read


async def test_the_confirmation_echoes_nothing_the_sender_typed(
    api: httpx.AsyncClient, worker: object, temporal: Client, settings: Settings
) -> None:
    typed = {
        "name": "Cheap Watches Online",
        "subject": "Your prize is waiting",
        "message": "Claim it at https://spam.example/win now",
        "phone": "+420 777 888 999",
    }
    handle = await submit(api, temporal, {**typed, "email": "victim@example.com"})
    progress = await handle.result()
    confirmation = outbox_messages(settings.outbox_dir)[f"contact-{progress.contact_id}-confirmation.eml"]
    assert confirmation["To"] == "victim@example.com"
    shown = f"{confirmation['Subject']}\n{confirmation.get_content()}"  # type: ignore[attr-defined]
    for value in typed.values():
        assert value not in shown
    for word in ("Cheap", "Watches", "prize", "spam.example", "777"):
        assert word not in shown
