"""Encrypted workflow payloads: Temporal without the keys learns nothing personal; with them, everything decodes;
rotated keys still decode old histories; the codec server answers operators only."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe
from fakes.stripe_emulator import SECRET_KEY, running_localstripe
from helpers import bearer, eventually, register_and_login, serve
from payload_keys import CONVERTER, PAYLOAD_KEYS, TEST_KEY_ID, encrypted_converter
from payments_support import (
    PREMIUM_BY_STRIPE,
    WEBHOOK_SECRET,
    checkout,
    pay,
    payment_stack,
    receipts,
    register_webhook,
    wait_for_status,
    with_gateway,
)
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.api.common.v1 import Payload
from temporalio.api.history.v1 import History
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from api.app import create_app
from settings import Settings
from worker import WORKFLOWS, build_worker
from workflows import codec as payload_codec
from workflows.contact import ContactWorkflow

HISTORIES = Path(__file__).resolve().parents[1] / "replay"
OPERATOR_TOKEN = "operator-" + "x" * 40
UI_ORIGIN = "http://localhost:8233"

CONTACT = {
    "name": "Grace Hopperfield",
    "email": "grace.hopperfield@example.org",
    "message": "My plan: a marmalade exchange for lighthouse keepers.",
}
IDEA = "A zeppelin timetable for retired astronomers, with tea reminders."
FEEDBACK = "Let the tea reminders whistle like a kettle on the observatory roof."
FILE_NAME = "grace-hopperfield-passport.png"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(200)


def new_key() -> str:
    return base64.b64encode(uuid.uuid4().bytes * 2).decode()


# --- reading histories the way someone with Temporal but no key would -------------------------------------------


def without_codec(temporal: Client) -> Client:
    """The same server and namespace, as the Temporal UI or CLI see it without the codec server."""
    return Client(temporal.service_client, namespace=temporal.namespace, data_converter=pydantic_data_converter)


async def history_of(client: Client, workflow_id: str) -> WorkflowHistory:
    return await client.get_workflow_handle(workflow_id).fetch_history()


def as_bytes(history: WorkflowHistory) -> bytes:
    """Every byte of the history: the protobuf (payload data raw, not base64) and its JSON form."""
    return History(events=history.events).SerializeToString() + history.to_json().encode()


UNCODED = ("search_attributes", "header", "marker_recorded_event_attributes")


def payloads_in(message: Any, *, skip: tuple[str, ...] = UNCODED) -> Iterator[Payload]:
    """Every Payload anywhere in a protobuf message. Never codec'd, so skipped unless asked for: search
    attributes and headers (opaque ids) and markers (the SDK writes `workflow.patched` ids there itself; the
    byte search above still covers them, so no personal data can hide in one)."""
    for field, value in message.ListFields():
        if field.message_type is None or field.name in skip:
            continue
        if hasattr(value, "ListFields"):
            values = [value]
        elif field.message_type.GetOptions().map_entry:
            values = [item for item in value.values() if hasattr(item, "ListFields")]
        else:
            values = list(value)
        for item in values:
            if isinstance(item, Payload):
                yield item
            else:
                yield from payloads_in(item, skip=skip)


def leaked(history: bytes, needles: list[str]) -> list[str]:
    lowered = history.lower()
    return [needle for needle in needles if needle.lower().encode() in lowered]


def test_the_search_finds_personal_data_in_a_history_written_before_encryption() -> None:
    """The control: the stored (unencrypted) replay history does hold the stub's address in plain bytes."""
    captured = HISTORIES / "captured" / "contact-notified-before-contact-by-id.json"  # inputs then named the sender
    history = WorkflowHistory.from_json("contact", captured.read_text())
    assert leaked(as_bytes(history), ["ada@example.com"]) == ["ada@example.com"]


# --- contact, prototype, checkout and retention: nothing personal without the key ---------------------------------


@pytest.fixture(scope="module")
def localstripe_url() -> Iterator[str]:
    with running_localstripe() as url:
        yield url


@pytest.mark.slow
async def test_histories_hold_no_personal_data_without_the_key_and_decode_with_it(
    settings: Settings, temporal: Client, engine: AsyncEngine, localstripe_url: str
) -> None:
    stripe_settings = with_gateway(
        settings,
        stripe_secret_key=SecretStr(SECRET_KEY),
        stripe_webhook_secret=SecretStr(WEBHOOK_SECRET),
        stripe_api_base=localstripe_url,
    )
    customer = stripe.StripeClient(
        SECRET_KEY, base_addresses={"api": localstripe_url}, http_client=stripe.HTTPXClient()
    )
    async with payment_stack(stripe_settings, temporal, engine) as http:
        account = await register_and_login(http)
        token = account["access_token"]

        contact = await http.post("/api/contact", json=CONTACT)
        assert contact.status_code == 202, contact.text
        contact_id = contact.json()["workflow_id"]
        await temporal.get_workflow_handle(contact_id).result()

        prototype = await http.post("/api/ai/prototype", json={"idea": IDEA}, headers=bearer(token))
        assert prototype.status_code == 202, prototype.text
        prototype_id = prototype.json()["workflow_id"]
        await temporal.get_workflow_handle(prototype_id).result()
        revision = await http.post(
            f"/api/prototypes/{prototype.json()['prototype_id']}/revisions",
            json={"feedback": FEEDBACK},
            headers=bearer(token),
        )
        assert revision.status_code == 202, revision.text
        revision_id = revision.json()["workflow_id"]
        await temporal.get_workflow_handle(revision_id).result()

        uploaded = await http.post(
            "/api/files/upload", files={"file": (FILE_NAME, PNG, "image/png")}, headers=bearer(token)
        )
        assert uploaded.status_code == 201, uploaded.text
        deleted = await http.delete(f"/api/files/{uploaded.json()['fileId']}", headers=bearer(token))
        assert deleted.status_code in (200, 202, 204), deleted.text
        retention_id = f"file-{uploaded.json()['fileId']}"
        await temporal.get_workflow_handle(retention_id).result()

        payment = (await checkout(http, token, PREMIUM_BY_STRIPE))["payment"]
        register_webhook(localstripe_url, str(http.base_url).rstrip("/"))
        await pay(customer, payment["next_action"]["client_secret"])
        await wait_for_status(http, token, payment["id"], "COMPLETED")
        checkout_id = f"payment-{payment['id']}"

        async def receipt_sent() -> list[Path]:
            return receipts(stripe_settings, payment["id"])

        await eventually(receipt_sent, what="the receipt email")

    # The emails still reach the account's address, which only the email activity read
    for message_id in (f"{prototype_id}-ready", f"{revision_id}-ready"):
        sent = BytesParser(policy=policy.default).parsebytes(
            (stripe_settings.outbox_dir / f"{message_id}.eml").read_bytes()
        )
        assert sent["To"] == account["email"], message_id

    personal = [account["email"], CONTACT["name"], CONTACT["email"], CONTACT["message"], IDEA, FEEDBACK, FILE_NAME]
    plain = without_codec(temporal)
    for workflow_id in (contact_id, prototype_id, revision_id, retention_id, checkout_id):
        history = await history_of(plain, workflow_id)
        assert leaked(as_bytes(history), personal) == [], f"{workflow_id} leaks personal data"

        payloads = list(payloads_in(History(events=history.events)))
        assert payloads, workflow_id
        assert {payload.metadata["encoding"] for payload in payloads} == {payload_codec.ENCODING}
        assert {payload.metadata[payload_codec.KEY_ID] for payload in payloads} == {TEST_KEY_ID.encode()}
        decoded = await CONVERTER.payload_codec.decode(payloads)  # type: ignore[union-attr]
        assert all(payload.metadata["encoding"] in (b"json/plain", b"binary/null") for payload in decoded)

    async def decoded(workflow_id: str) -> bytes:
        history = await history_of(plain, workflow_id)
        payloads = await CONVERTER.payload_codec.decode(list(payloads_in(History(events=history.events))))  # type: ignore[union-attr]
        return b"".join(payload.data for payload in payloads)

    # Even decoded, the contact's, the checkout's, the prototype's and the revision's histories hold ids, not
    # addresses: activities read those. (The idea and the feedback are there, decoded: the prompts need them.)
    readable = await decoded(contact_id)
    assert contact_id.removeprefix("contact-").encode() in readable
    assert leaked(readable, [CONTACT["name"], CONTACT["email"], CONTACT["message"]]) == []
    user_id = account["user"]["id"].encode()
    for workflow_id in (checkout_id, prototype_id, revision_id):
        readable = await decoded(workflow_id)
        assert user_id in readable, workflow_id
        assert leaked(readable, [account["email"]]) == [], f"{workflow_id} carries the address"
    assert IDEA.encode() in await decoded(prototype_id) and FEEDBACK.encode() in await decoded(revision_id)


# --- key rotation -------------------------------------------------------------------------------------------------


async def test_a_history_begun_under_an_old_key_finishes_and_decodes_after_rotation(
    settings: Settings, temporal: Client, engine: AsyncEngine
) -> None:
    old_ring = f"old:{new_key()}"
    rotated_ring = f"{old_ring},new:{new_key()}"
    old_client = Client(
        temporal.service_client, namespace=temporal.namespace, data_converter=encrypted_converter(old_ring)
    )
    new_converter = encrypted_converter(rotated_ring, key_id="new")
    new_client = Client(temporal.service_client, namespace=temporal.namespace, data_converter=new_converter)

    async with serve(create_app(settings, temporal=old_client)) as api:  # no worker yet: only the start is written
        accepted = await api.post("/api/contact", json=CONTACT)
    assert accepted.status_code == 202, accepted.text
    workflow_id = accepted.json()["workflow_id"]

    async with build_worker(new_client, settings, engine):
        progress = await new_client.get_workflow_handle_for(ContactWorkflow.run, workflow_id).result()
    assert progress.team_notified and progress.sender_confirmed

    history = await history_of(without_codec(temporal), workflow_id)
    payloads = list(payloads_in(History(events=history.events)))
    assert {payload.metadata[payload_codec.KEY_ID] for payload in payloads} == {b"old", b"new"}
    await new_converter.payload_codec.decode(payloads)  # type: ignore[union-attr]
    replayed = await Replayer(workflows=list(WORKFLOWS), data_converter=new_converter).replay_workflow(
        await history_of(new_client, workflow_id), raise_on_replay_failure=False
    )
    assert replayed.replay_failure is None  # a worker holding the ring replays it, both keys' payloads included
    with pytest.raises(payload_codec.UnknownPayloadKey):  # dropping the old key too early is loud, not silent
        await encrypted_converter(f"new:{new_key()}").payload_codec.decode(payloads)  # type: ignore[union-attr]


def test_the_key_ring_refuses_malformed_keys() -> None:
    for ring in (
        "",
        "no-colon",
        f"a:{base64.b64encode(bytes(16)).decode()}",
        "a:not base64!",
        f"a:{new_key()},a:{new_key()}",
    ):
        with pytest.raises(ValueError):
            payload_codec.KeyRing.parse(ring)
    with pytest.raises(ValueError, match="not in PAYLOAD_KEYS"):
        payload_codec.KeyRing.parse(PAYLOAD_KEYS, current="missing")
    assert payload_codec.KeyRing.parse(json.dumps([f"a:{new_key()}", f"b:{new_key()}"])).current == "b"


def test_the_development_key_is_made_once_and_kept(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, environment="development", data_dir=tmp_path)  # type: ignore[call-arg]
    first = payload_codec.KeyRing.from_settings(settings)
    assert payload_codec.KeyRing.from_settings(settings) == first
    assert (tmp_path / payload_codec.DEV_KEYS_FILE).stat().st_mode & 0o077 == 0


# --- the codec server -------------------------------------------------------------------------------------------


@pytest.fixture
async def codec_api(settings: Settings, temporal: Client) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings.model_copy(update={"codec_operator_token": SecretStr(OPERATOR_TOKEN)}), temporal=temporal)
    async with serve(app) as http:
        yield http


def payloads_json(*payloads: Payload) -> dict[str, Any]:
    return {
        "payloads": [
            {
                "metadata": {key: base64.b64encode(value).decode() for key, value in payload.metadata.items()},
                "data": base64.b64encode(payload.data).decode(),
            }
            for payload in payloads
        ]
    }


OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}", "X-Namespace": "default"}


async def test_the_codec_server_refuses_callers_without_the_operator_token(codec_api: httpx.AsyncClient) -> None:
    sealed = await CONVERTER.encode([CONTACT])
    customer = await register_and_login(codec_api)
    for headers in (
        {},
        bearer(customer["access_token"]),
        bearer(OPERATOR_TOKEN + "x"),
        {"Authorization": OPERATOR_TOKEN},
    ):
        for path in ("/codec/decode", "/codec/encode"):
            refused = await codec_api.post(path, json=payloads_json(*sealed), headers=headers)
            assert refused.status_code == 401, (path, headers, refused.text)
            assert CONTACT["email"] not in refused.text


async def test_the_codec_server_round_trips_payloads_for_operators(codec_api: httpx.AsyncClient) -> None:
    [plain] = await pydantic_data_converter.encode([CONTACT])
    encoded = await codec_api.post("/codec/encode", json=payloads_json(plain), headers=OPERATOR)
    assert encoded.status_code == 200, encoded.text
    [sealed] = encoded.json()["payloads"]
    assert base64.b64decode(sealed["metadata"]["encoding"]) == payload_codec.ENCODING
    assert CONTACT["email"].encode() not in base64.b64decode(sealed["data"])

    decoded = await codec_api.post("/codec/decode", json=encoded.json(), headers=OPERATOR)
    assert decoded.status_code == 200, decoded.text
    [opened] = decoded.json()["payloads"]
    assert json.loads(base64.b64decode(opened["data"])) == CONTACT

    unencrypted = await codec_api.post("/codec/decode", json=payloads_json(plain), headers=OPERATOR)
    assert unencrypted.json() == payloads_json(plain)  # histories from before encryption show as they are

    malformed = await codec_api.post(
        "/codec/decode", content=b"{not json", headers={**OPERATOR, "Content-Type": "application/json"}
    )
    assert malformed.status_code == 400


async def test_the_codec_server_allows_the_temporal_ui_origin_only(codec_api: httpx.AsyncClient) -> None:
    def preflight(origin: str, path: str = "/codec/decode") -> Any:
        return codec_api.options(
            path,
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,x-namespace,authorization",
            },
        )

    allowed = await preflight(UI_ORIGIN)
    assert allowed.status_code == 200, allowed.text
    assert allowed.headers["access-control-allow-origin"] == UI_ORIGIN
    assert allowed.headers["access-control-allow-credentials"] == "true"
    assert (await preflight("http://localhost:3000")).headers.get("access-control-allow-origin") is None
    assert (await preflight(UI_ORIGIN, "/api/contact")).headers.get("access-control-allow-origin") is None

    answer = await codec_api.post("/codec/decode", json={"payloads": []}, headers={**OPERATOR, "Origin": UI_ORIGIN})
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == UI_ORIGIN


async def test_without_a_token_only_development_on_this_machine_may_decode(
    settings: Settings, temporal: Client
) -> None:
    [sealed] = await CONVERTER.encode([CONTACT])
    development = settings.model_copy(update={"environment": "development"})
    async with serve(create_app(development, temporal=temporal)) as local:
        assert (await local.post("/codec/decode", json=payloads_json(sealed))).status_code == 200
        customer = await register_and_login(local)
        with_token = await local.post(
            "/codec/decode", json=payloads_json(sealed), headers=bearer(customer["access_token"])
        )
        assert with_token.status_code == 401
    async with serve(create_app(development, temporal=temporal), client_ip="203.0.113.9") as remote:
        assert (await remote.post("/codec/decode", json=payloads_json(sealed))).status_code == 401
    async with serve(create_app(settings, temporal=temporal)) as test_env:  # not development: a token or nothing
        assert (await test_env.post("/codec/decode", json=payloads_json(sealed))).status_code == 401


CUSTOMER_ORIGIN = "http://localhost:3000"  # one of the API's own CORS origins on a development default


async def test_no_customer_origin_gets_cors_headers_from_the_codec_server(codec_api: httpx.AsyncClient) -> None:
    """/codec speaks CORS to the Temporal UI's origins alone: a plain (non-preflight) request from a customer
    origin does not pass through to the API's own CORS, which would answer with that origin and credentials."""
    sealed = await CONVERTER.encode([CONTACT])
    # the customer origin is one the rest of the API allows
    elsewhere = await codec_api.get("/health", headers={"Origin": CUSTOMER_ORIGIN})
    assert elsewhere.headers.get("access-control-allow-origin") == CUSTOMER_ORIGIN
    for path in ("/codec/decode", "/codec/encode"):
        plain = await codec_api.post(path, json=payloads_json(*sealed), headers={**OPERATOR, "Origin": CUSTOMER_ORIGIN})
        preflight = await codec_api.options(
            path,
            headers={
                "Origin": CUSTOMER_ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,authorization",
            },
        )
        refused = await codec_api.post(path, json=payloads_json(*sealed), headers={"Origin": CUSTOMER_ORIGIN})
        for answer in (plain, preflight, refused):
            cors = {name for name in answer.headers if name.lower().startswith("access-control-")}
            assert cors == set(), (path, answer.status_code, answer.headers)
    ui = await codec_api.post("/codec/decode", json=payloads_json(*sealed), headers={**OPERATOR, "Origin": UI_ORIGIN})
    assert ui.headers["access-control-allow-origin"] == UI_ORIGIN


async def test_the_codec_server_takes_json_only(codec_api: httpx.AsyncClient) -> None:
    """A form or text/plain body is what a page on another origin can send without a preflight: 415."""
    body = json.dumps(payloads_json(*(await CONVERTER.encode([CONTACT])))).encode()
    for content_type in (None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        headers = dict(OPERATOR) if content_type is None else {**OPERATOR, "Content-Type": content_type}
        answer = await codec_api.post("/codec/decode", content=body, headers=headers)
        assert answer.status_code == 415, (content_type, answer.text)
        assert CONTACT["email"] not in answer.text
    json_with_charset = {**OPERATOR, "Content-Type": "application/json; charset=utf-8"}
    assert (await codec_api.post("/codec/decode", content=body, headers=json_with_charset)).status_code == 200


async def test_the_codec_server_answers_malformed_tampered_or_unknown_key_payloads_400(
    codec_api: httpx.AsyncClient,
) -> None:
    [sealed] = await CONVERTER.encode([CONTACT])
    tampered = Payload(metadata=dict(sealed.metadata), data=sealed.data[:-1] + bytes([sealed.data[-1] ^ 1]))
    unknown_key = Payload(metadata={**sealed.metadata, payload_codec.KEY_ID: b"nobody"}, data=sealed.data)
    other_key = Payload(metadata={**sealed.metadata, payload_codec.KEY_ID: b"\xff\xfe"}, data=sealed.data)
    truncated = Payload(metadata=dict(sealed.metadata), data=sealed.data[:5])
    cases: dict[str, Any] = {
        "tampered": payloads_json(tampered),
        "unknown key id": payloads_json(unknown_key),
        "key id not UTF-8": payloads_json(other_key),
        "truncated": payloads_json(truncated),
        "not Payloads": {"payloads": "no"},
        "data not a string": {"payloads": [{"metadata": {}, "data": 5}]},
        "a list": [1, 2],
    }
    for name, body in cases.items():
        answer = await codec_api.post("/codec/decode", json=body, headers=OPERATOR)
        assert answer.status_code == 400, (name, answer.text)
        assert answer.json()["error"], name
        assert "Traceback" not in answer.text and CONTACT["email"] not in answer.text, name
    for name, raw in {"not JSON": b"{not json", "not UTF-8": b'{"payloads": "\xff"}', "empty": b""}.items():
        answer = await codec_api.post(
            "/codec/decode", content=raw, headers={**OPERATOR, "Content-Type": "application/json"}
        )
        assert answer.status_code == 400, (name, answer.text)


async def test_a_blank_codec_operator_token_opens_nothing(
    settings: Settings, temporal: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The compose file passes `CODEC_OPERATOR_TOKEN: ${CODEC_OPERATOR_TOKEN:-}`: blank when unset. An empty
    token matched `Authorization: Bearer` with nothing after it; blank now means unset, and empty never matches."""
    monkeypatch.setenv("CODEC_OPERATOR_TOKEN", " ")
    assert Settings(_env_file=None).codec_operator_token is None  # type: ignore[call-arg]
    sealed = await CONVERTER.encode([CONTACT])
    empty = settings.model_copy(update={"codec_operator_token": SecretStr(""), "environment": "production"})
    async with serve(create_app(empty, temporal=temporal)) as api:
        for authorization in ("Bearer", "Bearer ", "bearer  "):
            answer = await api.post(
                "/codec/decode", json=payloads_json(*sealed), headers={"Authorization": authorization}
            )
            assert answer.status_code == 401, (authorization, answer.text)
