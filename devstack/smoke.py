"""`statex smoke`: a running Statex driven as a frontend drives it, one named step after another.

Register, log in, upload a file and fetch it back by its signed link, submit a prototype and wait for it to be
built and verified, revise it, check out a tier with Stripe and pay it, send a contact message, export the
account. The first step that fails ends the run with its name and why (exit 1); every step passed: exit 0.

Against `make run` on this machine (the default: the settings' API, outbox and local Stripe emulator) every step
runs. Against a deployment elsewhere (`--base-url https://api.example`) the steps that need this machine are
skipped and say so: paying needs the local Stripe emulator (a real gateway takes no test card from here), the
emails are checked only where an outbox folder is readable. `--no-skips` (CI) fails on a skipped step instead.

It needs only the runtime install (httpx), and makes one new account per run (no erasure: its payment record
would be kept anyway); on a shared deployment use a throwaway one.
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import io
import re
import sys
import time
import uuid
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from devstack import local_stripe
from settings import Settings, get_settings

READY_SECONDS = 120.0
PROTOTYPE_SECONDS = 600.0
"""Generous: the pipeline's steps, the sandbox's checks and its fix rounds, on a busy machine."""
SETTLE_SECONDS = 120.0
"""Payments, emails and exports: each a workflow of a few activities."""
POLL_SECONDS = 0.5
PASSWORD = "correct horse battery staple"


class StepFailed(Exception):
    """The step's name and what went wrong in it."""

    def __init__(self, step: str, why: str) -> None:
        super().__init__(f"step {step!r} failed: {why}")
        self.step = step


class Skipped(Exception):
    """The step cannot run against this deployment; the message says why."""


@dataclass
class Smoke:
    base_url: str
    public_url: str
    """Where the API's absolute links must point (PUBLIC_API_URL)."""
    settings: Settings
    outbox: Path | None
    no_skips: bool = False
    http: httpx.AsyncClient = field(init=False)
    token: str = ""
    results: list[tuple[str, str]] = field(default_factory=list)

    @asynccontextmanager
    async def step(self, name: str) -> AsyncIterator[None]:
        started = time.monotonic()
        try:
            yield
        except Skipped as skipped:
            if self.no_skips:
                raise StepFailed(name, f"skipped ({skipped}), and --no-skips was given") from None
            self._report(name, "skip", f"{skipped}")
            return
        except StepFailed:
            raise
        except AssertionError as err:
            raise StepFailed(name, str(err) or "an assertion failed") from err
        except (httpx.HTTPError, OSError, ValueError, KeyError) as err:
            raise StepFailed(name, f"{type(err).__name__}: {err}") from err
        self._report(name, "ok", f"{time.monotonic() - started:.2f} s")

    def _report(self, name: str, outcome: str, detail: str) -> None:
        self.results.append((name, outcome))
        print(f"{outcome:>4}  {name}  ({detail})", flush=True)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def url(self, path_or_url: str) -> str:
        return urljoin(self.base_url + "/", path_or_url)

    def assert_public(self, link: str, what: str) -> None:
        """Links follow PUBLIC_API_URL: one to :8000 from an API on another port is a dead link."""
        public_url = self.public_url
        public, got = urlsplit(public_url), urlsplit(link)
        assert (got.scheme, got.netloc) == (public.scheme, public.netloc), (
            f"{what} {link!r} is not on {self.public_url}"
        )

    async def emails(self, name: str) -> email.message.EmailMessage:
        """The outbox's `<name>.eml`, once it is written."""
        if self.outbox is None:
            raise Skipped("no outbox folder on this machine (EMAIL_BACKEND is not `outbox`, or --outbox not given)")
        path = self.outbox / f"{name}.eml"
        await until(lambda: _exists(path), SETTLE_SECONDS, f"{path} written")
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, email.message.EmailMessage)
        return message


async def _exists(path: Path) -> bool:
    return await asyncio.to_thread(path.exists)


async def until(condition: Callable[[], Awaitable[bool]], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not await condition():
        assert time.monotonic() < deadline, f"no {what} within {seconds:.0f} s"
        await asyncio.sleep(POLL_SECONDS)


def expect(response: httpx.Response, status: int) -> Any:
    assert response.status_code == status, (
        f"{response.request.method} {response.request.url.path} answered {response.status_code}, not {status}: "
        f"{response.text[:500]}"
    )
    return response.json() if response.headers.get("content-type", "").startswith("application/json") else None


def body_of(message: email.message.EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain", "html"))
    return str(part.get_content()) if part is not None else ""


async def run_steps(smoke: Smoke) -> None:
    http = smoke.http

    async with smoke.step("the API is ready"):

        async def ready() -> bool:
            try:
                return (await http.get(smoke.url("/ready"))).status_code == 200
            except httpx.TransportError:
                return False

        await until(ready, READY_SECONDS, f"200 from {smoke.url('/ready')}")

    address = f"smoke-{uuid.uuid4().hex[:12]}@example.com"
    async with smoke.step("register"):
        expect(await http.post(smoke.url("/auth/register"), json={"email": address, "password": PASSWORD}), 202)

    async with smoke.step("log in"):
        tokens = expect(await http.post(smoke.url("/auth/login"), json={"email": address, "password": PASSWORD}), 200)
        smoke.token = tokens["access_token"]
        me = expect(await http.get(smoke.url("/auth/me"), headers=smoke.auth), 200)
        assert me["email"] == address, me

    content = f"statex smoke {uuid.uuid4()}\n".encode()
    async with smoke.step("upload a file and download it by its link"):
        uploaded = expect(
            await http.post(
                smoke.url("/api/files/upload"), headers=smoke.auth, files={"file": ("smoke.txt", content, "text/plain")}
            ),
            201,
        )
        assert uploaded["size"] == len(content), uploaded
        smoke.assert_public(uploaded["downloadLink"], "the upload's downloadLink")
        by_link = await http.get(smoke.url(uploaded["downloadLink"]))  # a browser's <a href>: no Authorization
        assert by_link.status_code == 200, f"the downloadLink answered {by_link.status_code}"
        assert by_link.content == content, "the downloadLink served other bytes"
        by_owner = await http.get(smoke.url(uploaded["url"]), headers=smoke.auth)
        assert by_owner.status_code == 200 and by_owner.content == content, "the owner's URL served other bytes"

    prototype_id = ""
    async with smoke.step("submit a prototype and wait until it is built and verified"):
        accepted = expect(
            await http.post(
                smoke.url("/api/ai/prototype"),
                headers={**smoke.auth, "Idempotency-Key": uuid.uuid4().hex},
                json={"idea": "A to-do list where each task has a title and can be marked done."},
            ),
            202,
        )
        prototype_id = accepted["prototype_id"]
        view = await settled(smoke, smoke.url(accepted["status_url"]), long_poll=True)
        assert view["status"] == "COMPLETED", f"the prototype ended {view['status']}: {view.get('error')}"
        report = await zip_at(smoke, view["download_link"], "the prototype's download_link")
        assert view["verified"] is True, (
            f"the prototype was built but not verified (verified={view['verified']}, fix rounds {view['fix_rounds']}); "
            f"the sandbox's report:\n{report}"
        )

    async with smoke.step("the prototype's email links to this API"):
        message = await smoke.emails(f"prototype-{prototype_id}-ready")
        links = re.findall(r"https?://\S+/api/files/\S+", body_of(message))
        assert links, "no download link in the prototype's email"
        for link in links:
            smoke.assert_public(link, "the email's link")

    async with smoke.step("request a revision and wait for it"):
        revision = expect(
            await http.post(
                smoke.url(f"/api/prototypes/{prototype_id}/revisions"),
                headers={**smoke.auth, "Idempotency-Key": uuid.uuid4().hex},
                json={"feedback": "Let tasks have a due date too."},
            ),
            202,
        )
        view = await settled(smoke, smoke.url(revision["status_url"]), long_poll=False)
        assert view["status"] == "COMPLETED", f"the revision ended {view['status']}: {view.get('error')}"
        report = await zip_at(smoke, view["download_link"], "the revision's download_link")
        assert view["verified"] is True, f"the revision was built but not verified; the sandbox's report:\n{report}"

    await pay(smoke)

    async with smoke.step("send a contact message"):
        sender = f"smoke-contact-{uuid.uuid4().hex[:12]}@example.com"
        expect(
            await http.post(
                smoke.url("/api/contact"),
                json={"name": "Smoke Test", "email": sender, "message": "A message from statex smoke."},
            ),
            202,
        )
        if smoke.outbox is None:
            raise Skipped("sent; its emails are not checked: no outbox folder on this machine")
        outbox = smoke.outbox

        def confirmation_written() -> bool:
            return any(sender in eml.read_text(errors="replace") for eml in outbox.glob("contact-*.eml"))

        async def confirmed() -> bool:
            return await asyncio.to_thread(confirmation_written)

        await until(confirmed, SETTLE_SECONDS, f"the confirmation to {sender} in {outbox}")

    async with smoke.step("export the account and download the export"):
        started = expect(await http.post(smoke.url("/api/me/export"), headers=smoke.auth), 202)
        status_url = smoke.url(started["status_url"])
        export: dict[str, Any] = {}

        async def exported() -> bool:
            export.update(expect(await http.get(status_url, headers=smoke.auth), 200))
            assert export["status"] != "FAILED", f"the export failed: {export}"
            return bool(export["status"] == "COMPLETED")

        await until(exported, SETTLE_SECONDS, "a COMPLETED export")
        archive = await http.get(smoke.url(export["download_url"]), headers=smoke.auth)
        assert archive.status_code == 200, f"the export's download answered {archive.status_code}"
        with zipfile.ZipFile(io.BytesIO(archive.content)) as zipped:
            names = zipped.namelist()
            assert names, "the export is an empty zip"
            everything = b"".join(zipped.read(name) for name in names)
        assert address.encode() in everything, "the export does not hold the account's own email address"


async def settled(smoke: Smoke, status_url: str, *, long_poll: bool) -> dict[str, Any]:
    """A prototype's or a revision's view once it is no longer under way (a prototype's URL takes a long poll)."""
    view: dict[str, Any] = {}

    async def done() -> bool:
        params = {"wait": 30} if long_poll else None
        answer = await smoke.http.get(status_url, headers=smoke.auth, params=params, timeout=60)
        view.update(expect(answer, 200))
        return view["status"] in {"COMPLETED", "FAILED", "CANCELLED"}

    await until(done, PROTOTYPE_SECONDS, f"a finished prototype at {status_url}")
    return view


async def zip_at(smoke: Smoke, link: str | None, what: str) -> str:
    """The zip at a prototype's link, checked; its VERIFICATION.md (the sandbox's report), for a failure message."""
    assert link, f"{what} is missing"
    smoke.assert_public(link, what)
    answer = await smoke.http.get(smoke.url(link))
    assert answer.status_code == 200, f"{what} answered {answer.status_code}"
    with zipfile.ZipFile(io.BytesIO(answer.content)) as zipped:
        names = zipped.namelist()
        assert names, f"{what} is an empty zip"
        reports = [name for name in names if name.endswith("VERIFICATION.md")]
        if not reports:
            return "(no VERIFICATION.md in the zip)"
        return zipped.read(reports[0]).decode(errors="replace")[-2000:]


async def pay(smoke: Smoke) -> None:
    http = smoke.http
    payment: dict[str, Any] = {}
    async with smoke.step("check out PREMIUM with STRIPE"):
        gateways = expect(await http.get(smoke.url("/api/capabilities")), 200)["payments"]
        if not gateways.get("STRIPE", {}).get("available"):
            raise Skipped("STRIPE is not configured on this deployment")
        # 202: the payment is saved but no worker took its checkout within the API's wait (a worker still
        # starting); the same request with the same Idempotency-Key asks again, as a frontend does.
        key = uuid.uuid4().hex
        deadline = asyncio.get_running_loop().time() + SETTLE_SECONDS
        while True:
            checkout = await http.post(
                smoke.url("/api/payments/checkout"),
                headers={**smoke.auth, "Idempotency-Key": key},
                json={"tier": "PREMIUM", "gateway": "STRIPE"},
            )
            if checkout.status_code != 202 or asyncio.get_running_loop().time() > deadline:
                break
        payment.update(expect(checkout, 201)["payment"])
        assert payment["next_action"]["client_secret"], payment
        emulated = bool(gateways["STRIPE"].get("emulated"))

    async with smoke.step("pay with the test card at the local Stripe emulator"):
        if not payment:
            raise Skipped("no checkout")
        if not emulated:
            raise Skipped("STRIPE is a real gateway here: a test card can be paid only at the local emulator")
        webhook = smoke.url("/api/payments/webhooks/STRIPE")
        try:
            await local_stripe.pay(smoke.settings, payment["id"], "success", webhook)
        except local_stripe.EmulatorError as err:
            raise AssertionError(str(err)) from err

    async with smoke.step("the payment is COMPLETED, the tier unlocked, the receipt emailed"):
        if not payment or not emulated:
            raise Skipped("nothing was paid")

        async def completed() -> bool:
            status = expect(await http.get(smoke.url(f"/api/payments/{payment['id']}"), headers=smoke.auth), 200)
            assert status["status"] in {"PENDING", "COMPLETED"}, f"the payment is {status['status']}"
            return bool(status["status"] == "COMPLETED")

        await until(completed, SETTLE_SECONDS, "a COMPLETED payment")
        me = expect(await http.get(smoke.url("/auth/me"), headers=smoke.auth), 200)
        assert me["tier"] == "PREMIUM", f"the tier is {me['tier']}, not PREMIUM"
        receipt = await smoke.emails(f"payment-{payment['id']}-receipt")
        assert receipt["To"] == me["email"], f"the receipt went to {receipt['To']}"


async def smoke_test(smoke: Smoke) -> int:
    print(f"statex smoke against {smoke.base_url} (links expected on {smoke.public_url})", flush=True)
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=30, follow_redirects=False) as http:
        smoke.http = http
        try:
            await run_steps(smoke)
        except StepFailed as failed:
            print(f"FAIL  {failed.step}: {failed}", file=sys.stderr, flush=True)
            return 1
    skipped = [name for name, outcome in smoke.results if outcome == "skip"]
    print(
        f"statex smoke passed in {time.monotonic() - started:.1f} s: {len(smoke.results) - len(skipped)} steps"
        + (f", {len(skipped)} skipped" if skipped else ""),
        flush=True,
    )
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base-url", help="the API to drive; default: this machine's (API_HOST, API_PORT)")
    parser.add_argument(
        "--public-url", help="where its absolute links must point; default: PUBLIC_API_URL, or --base-url if given"
    )
    parser.add_argument(
        "--outbox", type=Path, help="the email outbox folder; default: DATA_DIR/outbox when emails go there"
    )
    parser.add_argument("--no-skips", action="store_true", help="a step that cannot run here fails instead (CI)")


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Against `--base-url`, or this machine's API with the settings' outbox and local Stripe emulator."""
    base_url = (args.base_url or settings.api_base_url).rstrip("/")
    public_url = args.public_url or args.base_url or settings.public_api_url
    outbox = args.outbox
    if outbox is None and args.base_url is None and settings.email_backend == "outbox":
        outbox = settings.outbox_dir
    smoke = Smoke(base_url, public_url.rstrip("/"), settings, outbox, no_skips=args.no_skips)
    return asyncio.run(smoke_test(smoke))


SUMMARY = "drive a running Statex as a frontend does, step by step: exit 1 at the first step that fails"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m devstack.smoke", description=SUMMARY)
    add_arguments(parser)
    sys.exit(run(get_settings(), parser.parse_args()))


if __name__ == "__main__":
    main()
