"""POST /api/ai/voice: a voice message is stored as a 24-hour file, transcribed by the fake provider's Whisper
endpoint through the real `openai` client, and its transcript goes through the prototype pipeline."""

from __future__ import annotations

import uuid
from pathlib import Path
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
from models.enums import PrototypeStatus, ServiceTier
from models.prompts import PIPELINE
from models.tables import File, Prototype
from settings import Settings
from workflows.retention import FileRetentionWorkflow

WEBM = b"\x1a\x45\xdf\xa3" + bytes(range(256)) * 8
PNG = b"\x89PNG\r\n\x1a\n" + bytes(300)
TRANSCRIPT = "openai heard: an app for booking climbing gyms"
OFFLINE_REFUSAL = "Voice input is not available: set OPENAI_API_KEY or AZURE_OPENAI_TRANSCRIPTION_DEPLOYMENT"


async def send_voice(
    api: httpx.AsyncClient,
    account: dict[str, Any],
    content: bytes = WEBM,
    content_type: str = "audio/webm",
    query: str = "",
    form: dict[str, str] | None = None,
) -> httpx.Response:
    return await api.post(
        f"/api/ai/voice{query}",
        files={"file": ("idea.webm", content, content_type)},
        data=form,
        headers=account["headers"],
    )


def stored_objects(settings: Settings) -> list[Path]:
    return [path for path in settings.files_dir.rglob("*") if path.is_file()] if settings.files_dir.exists() else []


async def test_voice_builds_the_prototype_from_the_transcript(
    temporal: Client, engine: AsyncEngine, ai_settings: Settings, fake_ai: FakeAIServer
) -> None:
    async with service(temporal, engine, ai_settings) as api:
        account = await sign_in(api, engine)
        accepted = await send_voice(api, account, query="?language=en")
        assert accepted.status_code == 202, accepted.text
        prototype_id = accepted.json()["prototype_id"]
        done = await finished(api, temporal, account, prototype_id)
        assert done["status"] == "COMPLETED", done
        zipped = unzip((await api.get(done["download_url"], headers=account["headers"])).content)
        kept = {item["contentType"]: item for item in (await api.get("/api/files", headers=account["headers"])).json()}
        assert set(kept) == {"audio/webm", "application/zip"}  # both live 24 hours
        audio_info = kept["audio/webm"]
        audio_retention = temporal.get_workflow_handle_for(FileRetentionWorkflow.run, f"file-{audio_info['fileId']}")
        assert (await audio_retention.query(FileRetentionWorkflow.status)).deletes_at is not None

    assert done["source"] == "voice" and done["idea"] == TRANSCRIPT
    assert done["steps"] == done["steps_done"] == ["transcription", *(step.name for step in PIPELINE), "package"]
    [heard] = [call for call in fake_ai.calls if call.kind == "transcription"]
    assert (heard.provider, heard.body["language"]) == ("openai", "en")
    # heard by its file id, not the customer's own file name
    assert heard.body["file"] == {
        "filename": f"{audio_info['fileId']}.webm",
        "size": len(WEBM),
        "content_type": "audio/webm",
    }
    requirements = next(call for call in fake_ai.calls if call.kind == "chat")
    assert TRANSCRIPT in requirements.prompt  # the transcript is the idea the agents work on

    rows = await calls_of(engine, prototype_id)
    assert [row.step for row in rows] == ["transcription", *(step.name for step in PIPELINE)]
    assert (rows[0].response, rows[0].model_used, rows[0].cost_usd_micros) == (TRANSCRIPT, "openai:whisper-1", 9050)
    assert rows[0].prompt.startswith(f"[voice message '{audio_info['fileId']}.webm'")  # not named as uploaded
    assert done["cost_usd_micros"] == sum(row.cost_usd_micros for row in rows) == 9050 + len(PIPELINE) * 8755
    assert f"Transcribed from your voice message by `openai:whisper-1`:\n\n{TRANSCRIPT}" in zipped["README.md"]

    async with open_session(engine) as db:
        prototype = await db.get(Prototype, uuid.UUID(prototype_id))
        audio = await db.get(File, uuid.UUID(audio_info["fileId"]))
    assert prototype is not None and prototype.idea == TRANSCRIPT
    assert audio is not None and (audio.content_type, audio.size_bytes) == ("audio/webm", len(WEBM))
    assert (ai_settings.files_dir / audio.storage_key).read_bytes() == WEBM
    [email] = outbox(ai_settings)
    assert TRANSCRIPT in body_of(email)


async def test_a_voice_prototype_can_ask_for_approval_of_its_requirements(
    temporal: Client, engine: AsyncEngine, ai_settings: Settings, fake_ai: FakeAIServer
) -> None:
    async with service(temporal, engine, ai_settings) as api:
        account = await sign_in(api, engine)
        unclear = await send_voice(api, account, form={"review_requirements": "perhaps"})
        accepted = await send_voice(api, account, form={"review_requirements": "true"})
        assert accepted.status_code == 202, accepted.text
        prototype_id = accepted.json()["prototype_id"]

        async def paused() -> dict[str, Any] | None:
            view = (await api.get(f"/api/prototypes/{prototype_id}", headers=account["headers"])).json()
            return view if view["status"] == "AWAITING_APPROVAL" else None

        waiting = await eventually(paused, within=30, what="the voice prototype to wait for approval")
        assert waiting["steps_done"] == ["transcription", "requirements"] and waiting["idea"] == TRANSCRIPT
        assert [row.step for row in await calls_of(engine, prototype_id)] == ["transcription", "requirements"]
        approved = await api.post(
            f"/api/prototypes/{prototype_id}/approval", json={"approve": True}, headers=account["headers"]
        )
        assert approved.status_code == 200, approved.text
        done = await finished(api, temporal, account, prototype_id)
    assert (unclear.status_code, unclear.json()["error"]) == (
        422,
        "form.review_requirements: Input should be a valid boolean",
    )
    assert done["status"] == "COMPLETED" and done["steps_done"][-1] == "package"


async def test_an_eu_users_voice_never_reaches_openai_even_with_azure_down(
    temporal: Client, engine: AsyncEngine, ai_settings: Settings, fake_ai: FakeAIServer
) -> None:
    fake_ai.fail_always("azure", 503)
    async with service(temporal, engine, ai_settings) as api:
        account = await sign_in(api, engine, ServiceTier.EU_COMPLIANCE)
        accepted = await send_voice(api, account)
        assert accepted.status_code == 202, accepted.text
        done = await finished(api, temporal, account, accepted.json()["prototype_id"])
    assert done["status"] == "FAILED" and done["current_step"] == "transcription"
    assert "No AI provider answered after retries: azure:" in done["error"]
    heard = fake_ai.calls_to("azure")
    assert len(heard) == ai_settings.ai_retry_maximum_attempts
    assert {call.path for call in heard} == {"/openai/deployments/eu-whisper/audio/transcriptions"}
    assert fake_ai.calls_to("openai") == [] and fake_ai.calls_to("ollama") == []
    [email] = outbox(ai_settings)
    assert "No AI provider answered after retries" in body_of(email)


async def test_voice_on_the_offline_tier_is_a_503_naming_the_setting_before_the_body_is_read(
    temporal: Client, engine: AsyncEngine, settings: Settings
) -> None:
    tiny_limit = settings.model_copy(update={"voice_max_bytes": 16})
    async with serve(create_app(tiny_limit, temporal=temporal)) as api:
        account = await sign_in(api, engine)
        for _ in range(3):
            refused = await send_voice(api, account)  # larger than the limit: the 503 came before any reading
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"] == f"{OFFLINE_REFUSAL} to enable transcription"
        # None of that used the AI quota: two prototypes still go through today.
        for _ in range(2):
            submitted = await api.post("/api/ai/prototype", json={"idea": "x"}, headers=account["headers"])
            assert submitted.status_code == 202, submitted.text
    assert stored_objects(settings) == []


async def test_an_eu_users_voice_without_an_azure_whisper_deployment_is_a_503_naming_that_setting(
    temporal: Client, engine: AsyncEngine, ai_settings: Settings, fake_ai: FakeAIServer
) -> None:
    no_whisper = ai_settings.model_copy(update={"azure_openai_transcription_deployment": None})
    async with serve(create_app(no_whisper, temporal=temporal)) as api:
        account = await sign_in(api, engine, ServiceTier.EU_COMPLIANCE)
        refused = await send_voice(api, account)
    assert refused.status_code == 503
    assert "set AZURE_OPENAI_TRANSCRIPTION_DEPLOYMENT to enable transcription" in refused.json()["error"]
    assert fake_ai.calls == []


async def test_anything_but_audio_is_refused_clearly_and_nothing_is_kept(
    temporal: Client, engine: AsyncEngine, ai_settings: Settings, fake_ai: FakeAIServer
) -> None:
    async with serve(create_app(ai_settings, temporal=temporal)) as api:
        account = await sign_in(api, engine)
        image = await send_voice(api, account, PNG, "image/png")
        disguised = await send_voice(api, account, PNG, "audio/mpeg")
        empty = await send_voice(api, account, b"", "audio/webm")
        not_multipart = await api.post("/api/ai/voice", json={"idea": "x"}, headers=account["headers"])
        bad_language = await send_voice(api, account, query="?language=english")
        # None of those counted: two voice messages still go through today.
        assert (await send_voice(api, account)).status_code == 202
        assert (await send_voice(api, account)).status_code == 202
        assert (await send_voice(api, account)).status_code == 429
    assert image.status_code == 415
    assert image.json()["error"].startswith("Files of type 'image/png' are not accepted; accepted: audio/flac")
    assert (disguised.status_code, disguised.json()["error"]) == (415, "The file's content is not audio/mpeg")
    assert (empty.status_code, empty.json()["error"]) == (422, "The file is empty")
    assert not_multipart.status_code == 415
    assert "multipart/form-data" in not_multipart.json()["error"]
    assert bad_language.status_code == 422 and "query.language" in bad_language.json()["error"]
    assert fake_ai.calls == []
    async with open_session(engine) as db:
        prototypes = (await db.exec(select(Prototype).where(Prototype.user_id == account["id"]))).all()
    assert [prototype.status for prototype in prototypes] == [PrototypeStatus.QUEUED] * 2
    assert len(stored_objects(ai_settings)) == 2  # the two accepted messages only


async def test_a_retried_voice_request_gets_the_first_prototype_and_costs_no_second_ai_request(
    temporal: Client, engine: AsyncEngine, ai_settings: Settings, fake_ai: FakeAIServer
) -> None:
    settings = ai_settings.model_copy(update={"rate_limit_ai": "2/day"})
    async with service(temporal, engine, settings) as api:
        account = await sign_in(api, engine)
        retry = {**account, "headers": {**account["headers"], "Idempotency-Key": f"voice-{uuid.uuid4().hex}"}}
        first = await send_voice(api, retry)
        assert first.status_code == 202, first.text
        for _ in range(3):  # a client retrying after a lost answer
            again = await send_voice(api, retry)
            assert again.status_code == 202, again.text
            assert again.json()["prototype_id"] == first.json()["prototype_id"]
        assert (await send_voice(api, account)).status_code == 202  # the day's second AI request is still there
        assert (await send_voice(api, account)).status_code == 429
        async with open_session(engine) as db:
            mine = (await db.exec(select(Prototype).where(Prototype.user_id == account["id"]))).all()
        assert len(mine) == 2
