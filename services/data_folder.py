"""DATA_DIR belongs to the service's user alone: what the service keeps there (the SQLite database, the
Temporal dev server's history file, outbox emails, stored files, upload spools, the development payload keys,
the Stripe emulator's state) is other customers' data, and any other account on the machine (`nobody`, which
the sandbox's jail runs as when the worker is root, included) must not read it.

`close_data_dir`, called once at the start of every process that writes there (the `statex` commands that run
a part, the worker, the API's uvicorn factory), sets the umask to 077 (so every file and folder the process and
its children make, the Temporal dev server's included, is 0600 / 0700), makes DATA_DIR 0700, and checks what
is already in it. An entry that group or others may reach is closed (`chmod go-rwx`) when this process may
change it (its own, or any as root): loose modes come from earlier versions, which wrote with the default
umask, or from `mkdir` in an image, and closing them is what an operator would do. One it may not change (a
file another account owns, a read-only mount) means someone else writes in DATA_DIR or controls it: the process
refuses to start and names the paths, rather than run with a data folder it cannot keep closed.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from settings import Settings

log = logging.getLogger(__name__)

PRIVATE_UMASK = 0o077
OPEN_TO_OTHERS = 0o077
"""Group and others' bits: none may be set on anything in DATA_DIR."""
NAMED_AT_MOST = 10


class DataDirNotPrivate(RuntimeError):
    """DATA_DIR holds what other accounts may read and this process may not close; the message says what."""


def close_data_dir(settings: Settings) -> Path:
    """Umask 077, DATA_DIR made (0700) and closed; its resolved path. Raises DataDirNotPrivate."""
    os.umask(PRIVATE_UMASK)
    folder = settings.data_dir.resolve()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    closed, refused = close_tree(folder)
    if refused:
        named = ", ".join(str(path) for path in refused[:NAMED_AT_MOST])
        more = f" and {len(refused) - NAMED_AT_MOST} more" if len(refused) > NAMED_AT_MOST else ""
        raise DataDirNotPrivate(
            f"DATA_DIR {folder} holds what other accounts may read, and this process (uid {os.geteuid()}) may not "
            f"close it: {named}{more}. Give the folder and everything in it to the service's user (chown -R) or "
            "close it (chmod -R go-rwx), then start again."
        )
    if closed:
        log.warning("DATA_DIR %s: closed %d entries group or others could reach (now owner-only)", folder, len(closed))
    return folder


def close_tree(folder: Path) -> tuple[list[Path], list[Path]]:
    """Every entry under `folder` (itself included; symbolic links are not followed) that group or others may
    reach: (those closed, those this process may not change)."""
    closed: list[Path] = []
    refused: list[Path] = []
    me = os.geteuid()
    paths = [folder]
    for directory, names, files in os.walk(folder):  # follows no link, and a vanished entry is no error
        paths += [Path(directory, name) for name in [*names, *files]]
    for path in paths:
        try:
            status = path.lstat()
        except FileNotFoundError:
            continue  # removed meanwhile (another process of the service, at work)
        if stat.S_ISLNK(status.st_mode) or not status.st_mode & OPEN_TO_OTHERS:
            continue
        if status.st_uid != me and me != 0:
            refused.append(path)
            continue
        try:
            path.chmod(stat.S_IMODE(status.st_mode) & ~OPEN_TO_OTHERS)
        except FileNotFoundError:
            continue
        except OSError:  # a read-only mount, an immutable file
            refused.append(path)
        else:
            closed.append(path)
    return closed, refused


def close_data_dir_or_exit(settings: Settings) -> Path:
    """`close_data_dir`, or the process ends with its message (exit status 1) before anything else starts."""
    try:
        return close_data_dir(settings)
    except DataDirNotPrivate as error:
        raise SystemExit(f"statex: refusing to start: {error}") from None
