"""Idempotency keys on the contact form: an anonymous key is the key alone, never the IP,
so two senders behind one address cannot silently lose a message; a reused key with another body is a 422."""

from __future__ import annotations

import uuid

import httpx
from helpers import bearer, register_and_login
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from test_contact import MESSAGE, outbox_messages

from models.db import open_session
from models.tables import Contact
from services.idempotency import KEY_REUSED
from settings import Settings

OTHER = {"name": "Grace Hopper", "email": "grace@example.com", "message": "A different message entirely."}


async def test_two_anonymous_senders_behind_one_ip_with_one_key_lose_nothing(
    api: httpx.AsyncClient, worker: object, temporal: Client, settings: Settings, engine: AsyncEngine
) -> None:
    key = {"Idempotency-Key": "contact-form-1"}  # a naive frontend: the same key on every browser
    first = await api.post("/api/contact", json=MESSAGE, headers=key)
    second = await api.post("/api/contact", json=OTHER, headers=key)  # same client IP (the test transport's)
    assert first.status_code == 202, first.text
    assert (second.status_code, second.json()["error"]) == (422, KEY_REUSED)
    await temporal.get_workflow_handle(first.json()["workflow_id"]).result()
    async with open_session(engine) as db:
        contact = await db.get(Contact, uuid.UUID(first.json()["contact_id"]))
    assert contact is not None and (contact.name, contact.message) == (MESSAGE["name"], MESSAGE["message"])
    team = outbox_messages(settings.outbox_dir)[f"contact-{contact.id}-team.eml"]
    assert MESSAGE["message"] in team.get_content()  # type: ignore[attr-defined]
    retried = await api.post("/api/contact", json=MESSAGE, headers=key)
    assert retried.status_code == 202 and retried.json()["contact_id"] == first.json()["contact_id"]


async def test_a_signed_in_senders_key_is_their_own(api: httpx.AsyncClient, worker: object) -> None:
    key = {"Idempotency-Key": "my-form"}
    anonymous = await api.post("/api/contact", json=MESSAGE, headers=key)
    ada = bearer((await register_and_login(api))["access_token"])
    grace = bearer((await register_and_login(api))["access_token"])
    mine = await api.post("/api/contact", json=OTHER, headers={**ada, **key})
    theirs = await api.post("/api/contact", json=MESSAGE, headers={**grace, **key})
    reused = await api.post("/api/contact", json=MESSAGE, headers={**ada, **key})
    assert anonymous.status_code == mine.status_code == theirs.status_code == 202
    assert len({anonymous.json()["contact_id"], mine.json()["contact_id"], theirs.json()["contact_id"]}) == 3
    assert (reused.status_code, reused.json()["error"]) == (422, KEY_REUSED)
