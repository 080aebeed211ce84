"""The local Stripe emulator: localstripe (PyPI) on loopback, what `statex run` starts when no Stripe key is set.

It is not Stripe and moves no money. It keeps PaymentIntents, takes test cards and sends signed webhooks like
Stripe, so a checkout can be tried on a fresh clone. Run as `python -m devstack.local_stripe --port N --state FILE`:
- on 127.0.0.1 only (localstripe's own `start()` listens on every interface);
- its objects kept in FILE in the data folder (localstripe would share /tmp/localstripe.pickle between every
  copy on the machine), written on every new object and once more on a clean stop, so pending checkouts
  survive a restart of `statex run` just as their workflows do.

`pay` is what Stripe.js does in a customer's browser: a card payment method, attached to the PaymentIntent,
confirmed. localstripe then sends `payment_intent.succeeded` (or `payment_intent.payment_failed`) to the
webhook that `statex run` registered, signed with WEBHOOK_SECRET, as Stripe signs.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import pickle
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from settings import Settings

SECRET_KEY = "sk_test_statex_local_emulator"
WEBHOOK_SECRET = "whsec_statex_local_emulator"
WEBHOOK_NAME = "statex"
CARDS = {
    "success": "4242424242424242",
    "declined": "4000000000000341",  # localstripe declines it when charged (4000000000000002 only on attach)
}


def emulated(settings: Settings) -> bool:
    """Stripe is emulated while no STRIPE_SECRET_KEY is set."""
    return settings.stripe_secret_key is None


def webhook_url(settings: Settings) -> str:
    """Where the emulator sends its webhooks: the API's Stripe webhook."""
    return f"{settings.api_base_url}/api/payments/webhooks/STRIPE"


def url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.local_stripe_port}"


def environment(settings: Settings) -> dict[str, str]:
    """What the API and the worker need to take Stripe payments at the emulator."""
    return {"STRIPE_SECRET_KEY": SECRET_KEY, "STRIPE_API_BASE": url(settings), "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET}


class EmulatorError(RuntimeError):
    """The emulator refused or could not be reached; the message says what to do."""


def _client(settings: Settings) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url(settings), auth=(SECRET_KEY, ""), timeout=10)


async def answers(settings: Settings) -> bool:
    try:
        async with _client(settings) as stripe:
            return (await stripe.get("/v1/balance")).status_code == 200
    except httpx.TransportError:
        return False


async def register_webhook(settings: Settings, webhook_url: str) -> None:
    """localstripe's own configuration endpoint: every event goes to `webhook_url`, signed with WEBHOOK_SECRET."""
    async with _client(settings) as stripe:
        response = await stripe.post(
            f"/_config/webhooks/{WEBHOOK_NAME}", data={"url": webhook_url, "secret": WEBHOOK_SECRET}
        )
    if response.status_code != 200:
        raise EmulatorError(f"the emulator refused the webhook registration: {response.status_code} {response.text}")


@dataclass(frozen=True)
class Paid:
    intent_id: str
    outcome: str


async def pay(settings: Settings, payment_id: str, card: str, webhook_url: str) -> Paid:
    """Pay the payment's PaymentIntent with a test card, as Stripe.js would.

    A declined card leaves the PaymentIntent open at Stripe (the customer may try another card), so the
    payment would stay PENDING until its expiry. To end it now, a decline is followed by what the workflow
    does at expiry: the PaymentIntent is cancelled at the emulator. localstripe sends no
    `payment_intent.canceled` event, so this posts the one Stripe would send to `webhook_url` itself, signed
    with WEBHOOK_SECRET exactly as Stripe signs.
    """
    try:
        async with _client(settings) as stripe:
            intent = await _intent_of(stripe, payment_id)
            if intent["status"] != "requires_payment_method":
                raise EmulatorError(f"payment {payment_id} cannot be paid now: its PaymentIntent is {intent['status']}")
            method = _json(
                await stripe.post(
                    "/v1/payment_methods",
                    data={
                        "type": "card",
                        "card[number]": CARDS[card],
                        "card[exp_month]": "12",
                        "card[exp_year]": str(time.gmtime().tm_year + 5),
                        "card[cvc]": "123",
                    },
                )
            )
            _json(await stripe.post(f"/v1/payment_intents/{intent['id']}", data={"payment_method": method["id"]}))
            confirmed = await stripe.post(f"/v1/payment_intents/{intent['id']}/confirm")
            if confirmed.status_code == 200:
                return Paid(intent["id"], "paid; the emulator's webhook tells the API in a second or two")
            if confirmed.status_code != 402:
                _json(confirmed)
            cancelled = _json(await stripe.post(f"/v1/payment_intents/{intent['id']}/cancel"))
    except httpx.TransportError as err:
        raise EmulatorError(
            f"the local Stripe emulator at {url(settings)} does not answer; is `statex run` running?"
        ) from err
    await _deliver(webhook_url, _event("payment_intent.canceled", cancelled))
    return Paid(intent["id"], "card declined; the checkout cancelled and its webhook delivered")


async def _intent_of(stripe: httpx.AsyncClient, payment_id: str) -> dict[str, Any]:
    """localstripe has no search: every PaymentIntent, page by page, matched on our metadata."""
    params: dict[str, str] = {"limit": "100"}
    while True:
        page = _json(await stripe.get("/v1/payment_intents", params=params))
        for intent in page["data"]:
            if (intent.get("metadata") or {}).get("payment_id") == payment_id:
                return intent
        if not page["has_more"]:
            raise EmulatorError(
                f"the local Stripe emulator has no PaymentIntent for payment {payment_id}; "
                "was it a STRIPE checkout on this `statex run`?"
            )
        params["starting_after"] = page["data"][-1]["id"]


def _json(response: httpx.Response) -> dict[str, Any]:
    if response.status_code != 200:
        raise EmulatorError(f"the emulator answered {response.status_code}: {response.text}")
    body: dict[str, Any] = response.json()
    return body


def _event(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    created = int(time.time())
    return {
        "id": f"evt_local_{uuid.uuid4().hex[:16]}",
        "object": "event",
        "type": kind,
        "created": created,
        "livemode": False,
        "data": {"object": obj},
    }


async def _deliver(webhook_url: str, event: dict[str, Any]) -> None:
    body = json.dumps(event).encode()
    signature = hmac.new(WEBHOOK_SECRET.encode(), b"%d.%s" % (event["created"], body), hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json", "Stripe-Signature": f"t={event['created']},v1={signature}"}
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            response = await http.post(webhook_url, content=body, headers=headers)
    except httpx.TransportError as err:
        raise EmulatorError(f"the API at {webhook_url} does not answer; is `statex run` running?") from err
    if response.status_code != 200:
        raise EmulatorError(f"the API refused the {event['type']} webhook: {response.status_code} {response.text}")


# --- the emulator's process ---------------------------------------------------------------------------


def serve(port: int, state: Path) -> None:
    from aiohttp import web
    from localstripe import resources

    def dump(store: resources.Store) -> None:
        with state.open("wb") as file:
            pickle.dump(dict(store), file, protocol=pickle.HIGHEST_PROTOCOL)

    resources.Store.dump_to_disk = dump  # type: ignore[method-assign]
    if state.exists():
        with state.open("rb") as file:
            resources.store.update(pickle.load(file))
    from localstripe.server import app

    async def keep_state(_: web.Application) -> None:  # objects change in place too: write the last state
        dump(resources.store)

    app.on_shutdown.append(keep_state)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def main() -> None:
    parser = argparse.ArgumentParser(prog="local_stripe", description="localstripe on loopback, state in a file")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state", type=Path, required=True)
    args = parser.parse_args()
    serve(args.port, args.state)


if __name__ == "__main__":
    main()
