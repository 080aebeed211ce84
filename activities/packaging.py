"""Packaging a prototype: the agents' answers become a zip, stored as a file like any upload (kept 24 hours).

The zip holds README.md (the idea, which model made each part, the cost), one markdown document per step,
under `code/` every fenced block of the code and tests steps that names its path (a fix round's block replaces
the file), and VERIFICATION.md when the code was checked in the sandbox (activities.sandbox): what passed, what
failed, and PREVIEW.png, the picture of the running app, when the sandbox took one; that picture is also
kept as a PNG file of its own (the status's `preview_link`), under the retention timer the workflow started.
The same answers always give the same bytes (fixed entry dates and order), so a retried activity stores the
same object again and the File row, keyed by the workflow's file id, is inserted once.
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from pathlib import PurePosixPath

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity

from activities.ai.offline import OFFLINE_MODEL, OFFLINE_NOTICE
from activities.storage import Storage, sign_download, storage_key
from activities.zips import keep_generated, zip_bytes
from models.messages.prototypes import PackagedPrototype, PrototypePackage, StepAnswer, VerificationResult
from models.untrusted import cleaned
from models.untrusted import fenced as fenced_data
from settings import Settings

CODE_FOLDER = "code"
VERIFICATION = "VERIFICATION.md"
PREVIEW = "PREVIEW.png"
PREVIEW_CONTENT_TYPE = "image/png"
MAX_CODE_FILES = 100
_MICROS_PER_USD = 1_000_000

# A fenced block: ```lang path/to/file ... ``` (or ~~~), closed by the same fence.
_FENCE = re.compile(
    r"^(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\n]*)\n(?P<body>.*?)^(?P=fence)[ \t]*$", re.MULTILINE | re.DOTALL
)
# A line naming the file just above its block: "### `app/main.py`", "**main.py**", "File: main.py:".
_NAME_LINE = re.compile(r"^[#*_\s]*(?:file(?:name)?:\s*)?`?(?P<path>[\w./-]+)`?[*_:\s]*$", re.IGNORECASE)
_NAME_PART = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9._-]*$")
_NAME_KEYS = ("title=", "file=", "filename=", "path=")
_NAMES_WITHOUT_DOT = frozenset({"Dockerfile", "Makefile", "Procfile", "Gemfile", "LICENSE"})


def safe_path(raw: str) -> str | None:
    """A relative path of plain names, or None: the model's file names must not escape the zip's folder."""
    path = raw.strip().strip("\"'`").removeprefix("./")
    parts = path.split("/")
    if not path or len(path) > 200 or len(parts) > 8 or path.startswith("/"):
        return None
    if any(part in {".", ".."} or not _NAME_PART.match(part) for part in parts):
        return None
    return path


def _looks_like_path(token: str) -> str | None:
    for key in _NAME_KEYS:
        token = token.removeprefix(key)
    path = safe_path(token)
    if path is None:
        return None
    name = PurePosixPath(path).name
    return path if "/" in path or "." in name.strip(".") or name in _NAMES_WITHOUT_DOT else None


def code_files(answer: str) -> dict[str, str]:
    """The files in a code answer: each fenced block whose info string, or the line above it, names a path.
    A later block with the same path replaces the earlier one (models repeat a file to correct it)."""
    files: dict[str, str] = {}
    for block in _FENCE.finditer(answer):
        tokens = block["info"].split()
        path = next((found for token in reversed(tokens) if (found := _looks_like_path(token))), None)
        if path is None:
            above = answer[: block.start()].rstrip("\n").rsplit("\n", 1)[-1]
            if named := _NAME_LINE.match(above):
                path = _looks_like_path(named["path"])
        if path is not None and (path in files or len(files) < MAX_CODE_FILES):
            files[path] = block["body"]
    return files


def fenced(files: dict[str, str]) -> str:
    """Files as fenced blocks naming their paths, which `code_files` reads back as they were: how a revision's
    agents and the sandbox are given the files from before. Each fence is longer than any run of backticks in
    its file, so no line of the file can close it."""
    blocks = []
    for path, text in files.items():
        longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
        fence = "`" * max(3, longest + 1)
        ending = "\n" if text and not text.endswith("\n") else ""
        blocks.append(f"{fence}{path}\n{text}{ending}{fence}")
    return "\n\n".join(blocks)


def merged_files(base: dict[str, str], answers: list[StepAnswer]) -> dict[str, str]:
    """The files of `base` with every file-holding answer's files over them, later answers last."""
    files = dict(base)
    for answer in answers:
        if answer.holds_files:
            files |= code_files(answer.text)
    return files


def usd(micros: int) -> str:
    """Micro-dollars as dollars, exactly: `$0.008755`."""
    return f"${micros // _MICROS_PER_USD}.{micros % _MICROS_PER_USD:06d}"


def _readme(package: PrototypePackage, files: dict[str, str]) -> str:
    offline = any(answer.model_used == OFFLINE_MODEL for answer in package.answers)
    title = " ".join(package.idea.split())[:80]
    lines = [f"# Prototype: {title}", ""]
    if offline:
        lines += [
            f"> **This is an offline template, not an AI model's work.** {OFFLINE_NOTICE}",
            "> Every document below is a form to fill in, and the code is a skeleton to start from.",
            "",
        ]
    lines += [
        f"Made by Statex for prototype `{package.prototype_id}` on {package.made_at:%Y-%m-%d %H:%M} UTC. "
        f"The download is kept until {package.expires_at:%Y-%m-%d %H:%M} UTC, then deleted.",
        "",
        "## The idea",
        "",
    ]
    if package.transcribed_by:
        lines += [f"Transcribed from your voice message by `{package.transcribed_by}`:", ""]
    lines += [package.idea, ""]
    if package.revision is not None:
        lines += [f"## Revision {package.revision}: what was asked", "", package.feedback or "", ""]
    lines += ["## What is in here", ""]
    lines += [f"- `{answer.document}`: the {answer.step} step's answer" for answer in package.answers]
    if files:
        made = "the revision" if package.revision else "the agents (the code, and its tests)"
        lines += [f"- `{CODE_FOLDER}/`: the files {made} wrote:"]
        lines += [f"  - `{CODE_FOLDER}/{path}`" for path in files]
    else:
        lines += ["- No files could be read from the code step's answer; its text is in its document above."]
    if package.verification is not None:
        lines += [f"- `{VERIFICATION}`: {verdict(package.verification, package.fix_rounds)}"]
        if (picture := package.verification.preview) is not None:
            lines += [f"- `{PREVIEW}`: the app's page `{picture.page_url_path}` as it ran in the sandbox"]
    lines += ["", "## How it was made", "", "| step | model | cost (USD) |", "|---|---|---|"]
    lines += [f"| {a.step} | `{a.model_used}` | {usd(a.cost_usd_micros)} |" for a in package.answers]
    total = sum(answer.cost_usd_micros for answer in package.answers)
    lines += ["", f"Total cost of the AI calls: {usd(total)}.", ""]
    return "\n".join(lines)


def verdict(result: VerificationResult, fix_rounds: int) -> str:
    rounds = f"{fix_rounds} fix round{'s' if fix_rounds != 1 else ''}"
    if not result.sandbox_available:
        return "NOT verified: sandbox unavailable"
    if result.sandbox_error is not None:
        return "NOT verified: the sandbox could not run"
    if not result.files:
        return "NOT verified: no files could be read from the code step's answer"
    if result.passed:
        return "verified: the code passed every check in the sandbox" + (f" after {rounds}" if fix_rounds else "")
    return f"NOT verified: the code still fails checks in the sandbox after {rounds}"


def verification_report(result: VerificationResult, fix_rounds: int) -> str:
    """VERIFICATION.md: the verdict, how the sandbox was closed, every check, and the output of each failure."""
    network = (
        "no network (a network namespace of its own)"
        if result.network_isolated
        else "**the network was not isolated** (no namespace could be made on this server)"
    )
    how = (
        "The code was NOT run: this server has no working sandbox (bubblewrap) to isolate it."
        if not result.sandbox_available
        else f"Checked in a sandbox (bubblewrap): {network}, its own user and process namespaces, nothing of the "
        "server but the interpreter (read-only) and its own folder, an empty environment, and limits on CPU time, "
        "memory, file size, processes and wall time. Each Python file was compiled, each JSON / TOML / YAML file "
        "parsed, and the tests among the files were run with pytest."
    )
    lines = ["# Verification", "", f"**{verdict(result, fix_rounds)}.**", "", how, ""]
    if not result.files and result.sandbox_error is None:
        return "\n".join([*lines, result.failures(), ""])
    if result.sandbox_error is not None:
        return "\n".join([*lines, fenced_data(result.failures()), ""])
    lines += ["| check | result |", "|---|---|"]
    lines += [f"| {_cell(check.name)} | {'passed' if check.passed else 'FAILED'} |" for check in result.checks]
    for check in result.checks:
        if not check.passed:
            # What the code printed is its own (hostile) text: cleaned, in a fence longer than any run of ` or ~
            # in it, so that nothing after the block's end is the code's.
            lines += ["", f"## {_cell(check.name)}", "", fenced_data(check.output)]
    return "\n".join([*lines, ""])


def _cell(name: str) -> str:
    """A check's name (the sandbox's words and safe paths) on one line of a table or a heading."""
    return " ".join(cleaned(name).replace("|", "/").split())


def package_entries(package: PrototypePackage) -> dict[str, str]:
    """Name -> text of every entry, README first."""
    files = merged_files(package.base_files, package.answers)
    entries = {"README.md": _readme(package, files)}
    entries |= {answer.document: answer.text for answer in package.answers}
    if package.verification is not None:
        entries[VERIFICATION] = verification_report(package.verification, package.fix_rounds)
    entries |= {f"{CODE_FOLDER}/{path}": text for path, text in files.items()}
    return entries


def zip_package(entries: dict[str, str], made_at: datetime, picture: bytes | None = None) -> bytes:
    """The prototype's zip: its entries under `prototype/`, in the order the package lists them, the picture of
    the app (PREVIEW.png) after the documents."""
    content = {name: text.encode("utf-8") for name, text in entries.items()}
    if picture is not None:
        documents = {name: data for name, data in content.items() if not name.startswith(f"{CODE_FOLDER}/")}
        content = documents | {PREVIEW: picture} | content
    return zip_bytes(content, made_at, "prototype")


def _revision_suffix(package: PrototypePackage) -> str:
    return f"-revision-{package.revision}" if package.revision is not None else ""


class PackagingActivities:
    def __init__(self, storage: Storage, engine: AsyncEngine, settings: Settings) -> None:
        self.storage = storage
        self.engine = engine
        self.settings = settings

    @activity.defn
    async def package_prototype(self, package: PrototypePackage) -> PackagedPrototype:
        """Zip, store under the file's key, then insert its File row (once: the id is the workflow's).
        The workflow has started the file's retention timer before calling this."""
        entries = package_entries(package)
        picture = package.verification.preview if package.verification is not None else None
        content = await asyncio.to_thread(zip_package, entries, package.made_at, picture.png if picture else None)
        sha256 = await keep_generated(
            self.storage,
            self.engine,
            content,
            file_id=package.file_id,
            key=package.storage_key or storage_key(package.file_id),
            user_id=package.user_id,
            name=f"prototype-{str(package.prototype_id)[:8]}{_revision_suffix(package)}.zip",
            made_at=package.made_at,
            expires_at=package.expires_at,
        )
        preview_token = None
        if picture is not None and package.preview_file_id is not None:
            await keep_generated(
                self.storage,
                self.engine,
                picture.png,
                file_id=package.preview_file_id,
                key=package.preview_storage_key or storage_key(package.preview_file_id),
                user_id=package.user_id,
                name=f"prototype-{str(package.prototype_id)[:8]}{_revision_suffix(package)}-{PREVIEW.lower()}",
                made_at=package.made_at,
                expires_at=package.expires_at,
                content_type=PREVIEW_CONTENT_TYPE,
            )
            preview_token = sign_download(self.settings, package.preview_file_id, package.expires_at)
        return PackagedPrototype(
            file_id=package.file_id,
            size=len(content),
            sha256=sha256,
            names=[*entries, *([PREVIEW] if picture is not None else [])],
            download_token=sign_download(self.settings, package.file_id, package.expires_at),
            preview_token=preview_token,
        )
