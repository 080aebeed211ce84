"""The picture of the running app, end to end on the offline tier: the worker's real packaging, storage, retention
and email, the API's status, stream and picture route. The sandbox's own screenshot is tested with the sandbox;
here a passing verdict is given a small real PNG (the `pictured` fixture), so what is delivered can be checked
byte for byte."""

from __future__ import annotations

import io
import uuid
import zipfile
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from ai.support import PICTURE, finished, outbox, service, sign_in
from ai.test_prototype_events import read_stream
from models.db import open_session
from models.tables import File
from settings import Settings
from workflows.prototype import result_file_id
from workflows.prototype_steps import preview_file_id
from workflows.retention import FileRetentionWorkflow
from workflows.retention import workflow_id as retention_workflow_id

IDEA = {"idea": "An app that books climbing gyms: members see free slots and reserve one."}


def relative(link: str, settings: Settings) -> str:
    """An absolute link of this API as the test client asks for it."""
    parts = urlsplit(link)
    assert f"{parts.scheme}://{parts.netloc}" == settings.public_api_url
    return f"{parts.path}?{parts.query}"


def parsed(path: Any) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
    assert isinstance(message, EmailMessage)
    return message


@pytest.mark.usefixtures("pictured")
async def test_the_picture_is_in_the_zip_the_status_the_stream_and_the_email(
    temporal: Client, engine: AsyncEngine, settings: Settings
) -> None:
    async with service(temporal, engine, settings) as api:
        account = await sign_in(api, engine)
        accepted = await api.post("/api/ai/prototype", json=IDEA, headers=account["headers"])
        prototype_id = accepted.json()["prototype_id"]
        done = await finished(api, temporal, account, prototype_id)
        zip_id = result_file_id(uuid.UUID(prototype_id))
        picture_id = preview_file_id(zip_id)
        assert done["status"] == "COMPLETED" and done["verified"] is True, done
        assert done["preview"] == {"file_id": str(picture_id), "width": 16, "height": 10, "page_url_path": "/"}
        assert done["preview_unavailable"] is None

        # The status's link shows the PNG to whoever holds it, with no sign-in, in an <img src>.
        shown = await api.get(relative(done["preview_link"], settings))
        assert shown.status_code == 200, shown.text
        assert (shown.content, shown.headers["content-type"]) == (PICTURE, "image/png")
        assert shown.headers["content-disposition"].startswith("inline;")
        assert shown.headers["cache-control"].startswith("private, max-age=")
        assert shown.headers["x-content-type-options"] == "nosniff"

        # A tampered link, another file's link, or the zip by its own link: refused.
        path = urlsplit(done["preview_link"]).path
        token = urlsplit(done["preview_link"]).query.removeprefix("token=")
        zip_token = urlsplit(done["download_link"]).query.removeprefix("token=")
        tampered = await api.get(f"{path}?token={token[:-2]}xx")
        anothers = await api.get(f"{path}?token={zip_token}")
        not_a_picture = await api.get(f"/api/files/{zip_id}/preview?token={zip_token}")
        unsigned = await api.get(path)
        assert (tampered.status_code, anothers.status_code, not_a_picture.status_code) == (401, 401, 404)
        assert unsigned.status_code == 422

        # The stream's last event carries the picture's link.
        completed = (await read_stream(api, account, prototype_id))[-1]
        assert (completed["kind"], completed["preview_file_id"]) == ("completed", str(picture_id))
        assert (await api.get(relative(completed["preview_link"], settings))).content == PICTURE

        download = await api.get(done["download_url"], headers=account["headers"])
        previews = (await api.get("/api/capabilities")).json()["previews"]
        timer = temporal.get_workflow_handle_for(FileRetentionWorkflow.run, retention_workflow_id(picture_id))
        deletes_at = (await timer.query(FileRetentionWorkflow.status)).deletes_at
    assert set(previews) == {"available", "reason"}

    with zipfile.ZipFile(io.BytesIO(download.content)) as archive:
        assert archive.read("prototype/PREVIEW.png") == PICTURE
        assert "`PREVIEW.png`" in archive.read("prototype/README.md").decode()

    # Kept as a file of its own, as long as the zip, under its own retention timer.
    async with open_session(engine) as db:
        picture, archive_row = await db.get(File, picture_id), await db.get(File, zip_id)
    assert picture is not None and archive_row is not None
    assert (picture.content_type, picture.size_bytes, picture.user_id) == ("image/png", len(PICTURE), account["id"])
    assert picture.expires_at == archive_row.expires_at
    assert deletes_at == picture.expires_at

    # The email shows it in place (multipart/related, by Content-ID) and its text alternative gives the link.
    [email] = outbox(settings)
    message = parsed(email)
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    assert f"/api/files/{picture_id}/preview?token=" in text.get_content()
    assert "A picture of your app's page / as it ran in our sandbox" in text.get_content()
    related = next(part for part in message.iter_parts() if part.get_content_type() == "multipart/related")
    [image] = [part for part in related.iter_parts() if part.get_content_type() == "image/png"]
    assert image.get_content() == PICTURE
    content_id = str(image["Content-ID"]).strip("<>")
    assert f'src="cid:{content_id}"' in html.get_content()


async def test_without_a_browser_the_prototype_completes_with_no_picture_and_the_reason(
    temporal: Client, engine: AsyncEngine, settings: Settings
) -> None:
    settings = settings.model_copy(update={"preview_browser": "/nonexistent/chromium"})
    async with service(temporal, engine, settings) as api:
        account = await sign_in(api, engine)
        accepted = await api.post("/api/ai/prototype", json=IDEA, headers=account["headers"])
        done = await finished(api, temporal, account, accepted.json()["prototype_id"])
        previews = (await api.get("/api/capabilities")).json()["previews"]

    assert done["status"] == "COMPLETED", done
    assert (done["preview"], done["preview_link"]) == (None, None)
    assert isinstance(done["preview_unavailable"], str) and done["preview_unavailable"]
    assert previews["available"] is False and "no browser at /nonexistent/chromium" in previews["reason"]
    [email] = outbox(settings)
    assert parsed(email).get_content_type() == "text/plain"
    assert f"No picture of the app: {done['preview_unavailable']}." in parsed(email).get_content()


async def test_previews_turned_off_are_said_to_be_off(
    temporal: Client, engine: AsyncEngine, settings: Settings
) -> None:
    settings = settings.model_copy(update={"previews_enabled": False})
    async with service(temporal, engine, settings) as api:
        previews = (await api.get("/api/capabilities")).json()["previews"]
    assert previews == {"available": False, "reason": "previews are turned off (PREVIEWS_ENABLED=false)"}
