"""`statex`: the one entry point for what `make run`, the Makefile and the Docker images start.

`statex run` is the embedded default on one machine (devstack/supervisor.py): a Temporal dev server, the worker
and the API; with no Stripe key also a local Stripe emulator, which `pay` pays with a test card. `worker`, `api`
and `migrate` run one part each, as production does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import worker
from api.server import api_command
from devstack import local_stripe, smoke, supervisor
from models import search_attributes
from models.db import migrate_database
from observability import metrics
from observability.logs import configure_logging
from services.data_folder import close_data_dir_or_exit
from settings import Settings, get_settings
from workflows.client import connect
from workflows.versions import make_current

log = logging.getLogger("statex")

# --- the parts, one at a time ---------------------------------------------------------------------


def run_worker(_: Settings) -> int:
    worker.main()
    return 0


def run_api(settings: Settings) -> int:
    """Migrates once (with RUN_MIGRATIONS_ON_START), then becomes the server (exec): signals reach uvicorn
    directly, so a container stops it gracefully. Its processes are told not to migrate: each would load
    Alembic (some 10 MB, kept for the process's life) to find nothing left to do. PROMETHEUS_MULTIPROC_DIR, when
    set, is emptied first: the processes about to start add up what they find there."""
    if settings.run_migrations_on_start:
        asyncio.run(migrate_database(settings))
    metrics.start_multiprocess_dir()
    command = api_command(settings)
    os.execve(command[0], command, {**os.environ, "RUN_MIGRATIONS_ON_START": "false"})


def run_migrations(settings: Settings) -> int:
    asyncio.run(migrate_database(settings))
    log.info("the database is at the latest migration")
    return 0


def pay(settings: Settings, payment_id: str, card: str) -> int:
    """The customer's side of a STRIPE checkout, against the local emulator that `statex run` started."""
    if not local_stripe.emulated(settings):
        print("statex pay works only with the local Stripe emulator, and STRIPE_SECRET_KEY is set", file=sys.stderr)
        return 2
    try:
        paid = asyncio.run(local_stripe.pay(settings, payment_id, card, local_stripe.webhook_url(settings)))
    except local_stripe.EmulatorError as err:
        print(f"statex pay: {err}", file=sys.stderr)
        return 1
    print(f"payment {payment_id} ({paid.intent_id}) with the {card} test card: {paid.outcome}")
    return 0


def make_version_current(settings: Settings, build_id: str | None, within: float) -> int:
    """After a rollout: this release's worker version, WORKER_DEPLOYMENT_NAME.WORKER_BUILD_ID, made current."""
    build_id = build_id or settings.worker_build_id
    if build_id is None:
        print("statex make-current: no build id; pass --build-id or set WORKER_BUILD_ID", file=sys.stderr)
        return 2
    version = f"{settings.worker_deployment_name}.{build_id}"

    async def promote() -> None:
        await make_current(await connect(settings), settings.worker_deployment_name, build_id, within=within)

    try:
        asyncio.run(promote())
    except TimeoutError:
        print(f"statex make-current: {version} did not poll and take over within {within:g} s", file=sys.stderr)
        return 1
    print(f"{version} is current: new workflows and every running one's next task go to it")
    return 0


MAKE_CURRENT_HELP = """\
Make a worker build the current version of its Temporal Worker Deployment (WORKER_DEPLOYMENT_NAME): wait until
its workers poll, set it current, wait until every task queue routes to it. Run it once the new workers are up
(after `kubectl rollout status`); from then on new workflows and every running workflow's next task go to it.
The same as `temporal worker deployment set-current-version`, for images without the temporal CLI
(docs/operations.md, "Deploying new workflow code")."""


PAY_HELP = """\
Pay a STRIPE checkout at the local Stripe emulator that `statex run` starts when no STRIPE_SECRET_KEY is set,
as Stripe.js would in the customer's browser. The emulator then sends its signed payment_intent.succeeded
webhook to the API, which completes the payment (tier unlocked, receipt in the outbox). A declined card
leaves a Stripe PaymentIntent open for another card, so after the decline this command cancels it at the
emulator, as the workflow does at expiry, and, because localstripe sends no payment_intent.canceled event,
posts that event to the API itself, signed with the emulator's webhook secret as Stripe signs: the payment
ends FAILED."""


def print_search_attribute_commands(settings: Settings) -> int:
    """A cluster does not get them from `start-dev` flags: an operator creates them once per namespace."""
    for key in search_attributes.ALL:
        command = ["temporal", "operator", "search-attribute", "create"]
        command += ["--address", settings.temporal_address, "--namespace", settings.temporal_namespace]
        command += ["--name", key.name, "--type", search_attributes.cli_type(key)]
        print(shlex.join(command))
    return 0


def write_openapi(settings: Settings, output: Path | None) -> int:
    """The API's OpenAPI document as its /openapi.json serves it, built from the app without serving it (no
    database, no Temporal): what frontend-client/ generates its typed client from."""
    from api.app import create_app  # only this command needs the app

    document = json.dumps(create_app(settings).openapi(), indent=2) + "\n"
    if output is None:
        sys.stdout.write(document)
    else:
        output.write_text(document)
    return 0


COMMANDS: dict[str, tuple[Callable[[Settings], int], str]] = {
    "run": (
        supervisor.run,
        "the embedded default: Temporal dev server, worker and API together (and a local Stripe emulator while no "
        "STRIPE_SECRET_KEY is set); Ctrl-C stops them",
    ),
    "worker": (run_worker, "the Temporal worker"),
    "api": (run_api, "the HTTP API (uvicorn)"),
    "migrate": (run_migrations, "upgrade the database to the latest migration"),
    "search-attributes": (
        print_search_attribute_commands,
        "print the commands that create the custom search attributes on a Temporal cluster",
    ),
}


SERVICE_COMMANDS = frozenset({"run", "worker", "api", "migrate"})
"""The commands whose processes write DATA_DIR (the others only print, or talk to the running stack)."""


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="statex", description="Statex backend. Settings come from the environment.")
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, summary) in COMMANDS.items():
        subcommands.add_parser(name, help=summary, description=summary)
    paying = subcommands.add_parser(
        "pay",
        help="pay a STRIPE checkout at the local Stripe emulator with a test card",
        description=PAY_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    paying.add_argument("payment_id", help="the `id` of the payment that POST /api/payments/checkout answered")
    paying.add_argument(
        "--card",
        choices=sorted(local_stripe.CARDS),
        default="success",
        help="success: 4242 4242 4242 4242; declined: 4000 0000 0000 0341",
    )
    smoking = subcommands.add_parser(
        "smoke", help=smoke.SUMMARY, description=smoke.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    smoke.add_arguments(smoking)
    promoting = subcommands.add_parser(
        "make-current",
        help="make this release's worker version current (Worker Versioning), once its workers poll",
        description=MAKE_CURRENT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    promoting.add_argument("--build-id", help="the version's build id (default: WORKER_BUILD_ID)")
    promoting.add_argument("--within", type=float, default=300.0, help="seconds to wait for its workers (default: 300)")
    documenting = subcommands.add_parser(
        "openapi",
        help="write the API's OpenAPI document (as /openapi.json serves it) without starting anything",
        description="Write the API's OpenAPI document, built from the app without serving it.",
    )
    documenting.add_argument("--output", type=Path, help="a file to write it to (default: standard output)")
    args = parser.parse_args(argv)
    settings = get_settings()
    configure_logging(settings)  # quiets httpx too: `run` polls /ready, one line per poll otherwise
    if args.command == "pay":
        sys.exit(pay(settings, args.payment_id, args.card))
    if args.command == "smoke":
        sys.exit(smoke.run(settings, args))
    if args.command == "make-current":
        sys.exit(make_version_current(settings, args.build_id, args.within))
    if args.command == "openapi":
        sys.exit(write_openapi(settings, args.output))
    handler, _ = COMMANDS[args.command]
    # The commands that run a part of the service write DATA_DIR: umask 077 (inherited by their children, the
    # Temporal dev server and the Stripe emulator too) and an owner-only DATA_DIR, or no start.
    if args.command in SERVICE_COMMANDS:
        close_data_dir_or_exit(settings)
    sys.exit(handler(settings))


if __name__ == "__main__":
    main()
