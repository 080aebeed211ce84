"""DATA_DIR is the service's user's alone: every process that writes there starts with umask 077 and an
owner-only DATA_DIR; what it finds open it closes, what it may not close stops it. (That the sandbox's hostile
code cannot read it: tests/ai/test_hostile_data.py.)"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from helpers import PNG, register_and_login, stored_objects, upload

import api.app
import cli
import worker
from activities.email import OutboxMailer
from models.messages.email import EmailMessage
from services import data_folder
from services.data_folder import DataDirNotPrivate, close_data_dir, close_data_dir_or_exit
from settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def modes(folder: Path) -> dict[str, int]:
    """Every entry under `folder` (itself as "."), by relative path: its permission bits."""
    found = {".": stat.S_IMODE(folder.lstat().st_mode)}
    for path in folder.rglob("*"):
        found[str(path.relative_to(folder))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def owner_only(found: dict[str, int]) -> dict[str, int]:
    """The entries group or others could reach (none, when all is well)."""
    return {path: mode for path, mode in found.items() if mode & 0o077}


@pytest.fixture
def process_umask() -> Iterator[None]:
    """close_data_dir sets this process's umask, as a service process's start does; the next test gets it back."""
    before = os.umask(0o022)
    os.umask(before)
    try:
        yield
    finally:
        os.umask(before)


def open_data_dir(folder: Path) -> Path:
    """A DATA_DIR as an earlier version left it (default umask) or an image's `mkdir` made it: open to all."""
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    (folder / "outbox").mkdir()
    (folder / "outbox").chmod(0o755)
    (folder / "outbox" / "old.eml").write_text("To: someone@example.com\n\nanother customer's mail\n")
    (folder / "outbox" / "old.eml").chmod(0o644)
    (folder / "payload-keys").write_text("secret")
    (folder / "payload-keys").chmod(0o666)
    return folder


async def test_what_the_service_writes_is_its_users_alone(
    api: httpx.AsyncClient, settings: Settings, process_umask: None
) -> None:
    close_data_dir(settings)
    account = await register_and_login(api)
    uploaded = await upload(api, account["access_token"], PNG)
    assert uploaded.status_code == 201, uploaded.text
    mailer = OutboxMailer(settings.outbox_dir, settings.email_from)
    message = EmailMessage(message_id=uuid.uuid4().hex, to=["a@example.com"], subject="Hi", text="private")
    sent = await mailer.deliver(message)

    [stored] = stored_objects(settings)  # the customer's upload, in DATA_DIR/files
    assert stored.read_bytes() == PNG
    assert (settings.outbox_dir / str(sent)).read_text().endswith("private\n")
    found = modes(settings.data_dir)
    assert found["."] == 0o700
    assert found[str(stored.relative_to(settings.data_dir))] == 0o600
    assert found[f"outbox/{sent}"] == 0o600 and found["outbox"] == 0o700
    assert owner_only(found) == {}, found


def test_a_start_on_an_open_data_dir_closes_it_and_the_sqlite_database_is_owner_only(tmp_path: Path) -> None:
    data = open_data_dir(tmp_path / "data")
    environment = {name: value for name, value in os.environ.items() if name not in {"DATABASE_URL", "UMASK"}}
    environment |= {"DATA_DIR": str(data), "ENVIRONMENT": "development", "PYTHONPATH": str(ROOT)}
    migrated = subprocess.run(  # the real start of a service command, umask 022 before it as in a shell
        ["sh", "-c", 'umask 022 && exec "$0" -m cli migrate', sys.executable],
        cwd=tmp_path,  # no .env
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert migrated.returncode == 0, migrated.stderr
    found = modes(data)
    assert found["statex.sqlite3"] == 0o600  # made by the migration, under the process's umask 077
    assert (found["."], found["outbox"], found["outbox/old.eml"], found["payload-keys"]) == (0o700, 0o700, 0o600, 0o600)
    assert owner_only(found) == {}, found
    assert "closed 4 entries" in migrated.stderr  # DATA_DIR, outbox, old.eml, payload-keys


def test_what_this_process_may_not_close_stops_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, process_umask: None
) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "theirs.eml").write_text("")
    (data / "theirs.eml").chmod(0o644)
    (data / "closed").write_text("")
    (data / "closed").chmod(0o600)
    # As an account that owns none of it (and is not root): the files are someone else's.
    monkeypatch.setattr(data_folder.os, "geteuid", lambda: 4242)
    settings = Settings(_env_file=None, data_dir=data)  # type: ignore[call-arg]
    with pytest.raises(DataDirNotPrivate) as refused:
        close_data_dir(settings)
    assert f"DATA_DIR {data} holds what other accounts may read" in str(refused.value)
    assert str(data / "theirs.eml") in str(refused.value) and "closed" not in str(refused.value).split(": ")[1]
    assert "chmod -R go-rwx" in str(refused.value)
    with pytest.raises(SystemExit) as stopped:
        close_data_dir_or_exit(settings)
    assert str(stopped.value.code).startswith("statex: refusing to start: DATA_DIR")
    assert stat.S_IMODE((data / "theirs.eml").stat().st_mode) == 0o644  # left as it was


class Closed(Exception):
    """What the stand-in for close_data_dir_or_exit raises: the entry point called it before anything else."""


@pytest.mark.parametrize("entry", ["worker", "api", "statex run", "statex worker", "statex api", "statex migrate"])
def test_every_service_process_closes_data_dir_first(
    entry: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path)  # type: ignore[call-arg]

    def stand_in(given: Settings) -> Path:
        assert given is settings
        raise Closed

    for module in (worker, api.app, cli):
        monkeypatch.setattr(module, "close_data_dir_or_exit", stand_in)
        monkeypatch.setattr(module, "get_settings", lambda: settings)
    monkeypatch.setattr(cli, "configure_logging", lambda _: None)
    with pytest.raises(Closed):
        if entry == "worker":
            worker.main()
        elif entry == "api":
            api.app.serve()
        else:
            cli.main([entry.split()[1]])
