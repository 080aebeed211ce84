"""Receiving one uploaded file: streamed from the request to a temporary file, never whole in memory.

While the bytes arrive they are counted (413 past the limit, before the rest is read), hashed (SHA-256) and
checked: the declared content type must be allowed, and the first bytes must match it (415 otherwise). The
form as a whole is bounded too (total bytes, parts, header size), an upload that stops sending is cut off
(408), and a user has at most UPLOADS_PER_USER_AT_ONCE uploads in flight (429).
"""

from __future__ import annotations

import asyncio
import codecs
import hashlib
import json
import tempfile
import unicodedata
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Collection, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from fastapi import Request
from pydantic import TypeAdapter, ValidationError
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from services.errors import (
    BadRequest,
    PayloadTooLarge,
    RequestTimeout,
    TooManyRequests,
    Unprocessable,
    UnsupportedMediaType,
)
from services.files import ReceivedFile

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks  # a TypedDict that exists for type checkers only

FIELD_NAME = "file"
MAX_NAME_LENGTH = 255
SNIFF_BYTES = 16
MULTIPART_ALLOWANCE = 64 * 1024
"""What the whole body may have beyond the file itself: boundaries, part headers, small fields."""
MAX_PARTS = 16
"""A form with a file needs one part; a few small fields may come with it. More is an attack on the parser."""
MAX_PART_HEADER_BYTES = 8 * 1024
MAX_FIELD_BYTES = 1024
"""Of a form field other than the file (a flag, a short value), what is kept: the rest is read (the body limit
bounds it) but not kept, so a longer value reads as the invalid value it is."""

# What the first bytes of each binary type look like. Text types are checked as UTF-8 instead.
_SIGNATURES: dict[str, Callable[[bytes], bool]] = {
    "image/png": lambda head: head.startswith(b"\x89PNG\r\n\x1a\n"),
    "image/jpeg": lambda head: head.startswith(b"\xff\xd8\xff"),
    "image/gif": lambda head: head[:6] in (b"GIF87a", b"GIF89a"),
    "image/webp": lambda head: head[:4] == b"RIFF" and head[8:12] == b"WEBP",
    "application/pdf": lambda head: head.startswith(b"%PDF-"),
    "application/zip": lambda head: head[:4] in (b"PK\x03\x04", b"PK\x05\x06"),
    "audio/mpeg": lambda head: head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] >= 0xE0),
    "audio/wav": lambda head: head[:4] == b"RIFF" and head[8:12] == b"WAVE",
    "audio/x-wav": lambda head: head[:4] == b"RIFF" and head[8:12] == b"WAVE",
    "audio/ogg": lambda head: head.startswith(b"OggS"),
    "audio/webm": lambda head: head.startswith(b"\x1a\x45\xdf\xa3"),
    "audio/flac": lambda head: head.startswith(b"fLaC"),
    "audio/mp4": lambda head: head[4:8] == b"ftyp",
    "audio/x-m4a": lambda head: head[4:8] == b"ftyp",
}
_FLAG = TypeAdapter(bool)


def multipart_body(**fields: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI for a route that parses its own multipart body (FastAPI cannot see the stream): the file, and
    the small `fields` the route reads from ReceivedFile.form."""
    properties = {"file": {"type": "string", "format": "binary"}, **fields}
    schema = {"type": "object", "required": ["file"], "properties": properties}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


MULTIPART_BODY = multipart_body()


def form_flag(form: Mapping[str, str], name: str) -> bool:
    """A boolean form field as a JSON body's would be read ('true', 'false', '1', '0', 'on', ...); absent: false."""
    if name not in form:
        return False
    try:
        return _FLAG.validate_python(form[name].strip())
    except ValidationError:
        raise Unprocessable(f"form.{name}: Input should be a valid boolean") from None


_TEXT_TYPES = frozenset({"text/plain", "text/markdown", "text/csv", "application/json"})


def check_filename(raw: str) -> str:
    """The name is only metadata, but it is shown back to people: refuse what no real file is called."""
    name = unicodedata.normalize("NFC", raw).strip()
    if not name:
        raise Unprocessable("The file needs a name")
    if len(name) > MAX_NAME_LENGTH:
        raise Unprocessable(f"The file name is longer than {MAX_NAME_LENGTH} characters")
    if any(unicodedata.category(c) in {"Cc", "Cf", "Cs"} for c in name):
        raise Unprocessable("The file name contains control characters")
    if "/" in name or "\\" in name or name in {".", ".."}:
        raise Unprocessable("The file name must be a plain name, without folders or '..'")
    return name


@dataclass
class _Part:
    headers: dict[str, bytes] = field(default_factory=dict)
    name: str | None = None
    filename: str | None = None


class _FileReceiver:
    """python-multipart callbacks: the `file` part goes to disk; other fields (parts without a file name) are kept
    as text in `form`, cut past MAX_FIELD_BYTES (the route decides which it reads); other files are ignored."""

    def __init__(self, sink: IO[bytes], max_bytes: int, allowed: Collection[str]) -> None:
        self.sink = sink
        self.max_bytes = max_bytes
        self.allowed = allowed
        self.part = _Part()
        self.parts = 0
        self.header_bytes = 0
        self.header_field = b""
        self.header_value = b""
        self.file: _Part | None = None
        self.content_type = ""
        self.complete = False
        self.receiving = False
        self.size = 0
        self.head = b""
        self.digest = hashlib.sha256()
        self.text_decoder: codecs.IncrementalDecoder | None = None
        self.form: dict[str, str] = {}
        self.value = b""

    def on_part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise PayloadTooLarge(f"The form has more than {MAX_PARTS} parts; send the file in one '{FIELD_NAME}' part")
        self.part = _Part()
        self.header_bytes = 0
        self.value = b""

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self.header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self.header_value += data[start:end]

    def _count_header(self, size: int) -> None:
        self.header_bytes += size
        if self.header_bytes > MAX_PART_HEADER_BYTES:
            raise PayloadTooLarge(f"A part's headers are longer than {MAX_PART_HEADER_BYTES // 1024} KB")

    def on_header_end(self) -> None:
        self.part.headers[self.header_field.decode("latin-1").lower()] = self.header_value
        self.header_field = self.header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.part.headers.get("content-disposition", b""))
        self.part.name = _option(options, b"name")
        self.part.filename = _option(options, b"filename")
        if self.part.name != FIELD_NAME:
            return
        if self.file is not None:
            raise Unprocessable(f"Send one file per upload, in the '{FIELD_NAME}' field")
        if self.part.filename is None:
            raise Unprocessable(f"The '{FIELD_NAME}' field must be a file, with a file name")
        check_filename(self.part.filename)
        declared, _ = parse_options_header(self.part.headers.get("content-type", b"application/octet-stream"))
        content_type = declared.decode("latin-1").lower()
        if content_type not in self.allowed:
            raise UnsupportedMediaType(
                f"Files of type '{content_type}' are not accepted; accepted: {', '.join(sorted(self.allowed))}"
            )
        self.content_type = content_type
        if content_type in _TEXT_TYPES:
            self.text_decoder = codecs.getincrementaldecoder("utf-8")()
        self.file = self.part
        self.receiving = True

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if not self.receiving:
            if self.part.filename is None and len(self.value) <= MAX_FIELD_BYTES:
                self.value += data[start : start + MAX_FIELD_BYTES + 1 - len(self.value)]
            return
        chunk = data[start:end]
        self.size += len(chunk)
        if self.size > self.max_bytes:
            raise PayloadTooLarge(f"The file is larger than the limit of {megabytes(self.max_bytes)}")
        if len(self.head) < SNIFF_BYTES:
            self.head += chunk[: SNIFF_BYTES - len(self.head)]
        if self.text_decoder is not None:
            self._check_text(chunk)
        self.digest.update(chunk)
        self.sink.write(chunk)

    def on_part_end(self) -> None:
        if not self.receiving and self.part.name not in (None, FIELD_NAME) and self.part.filename is None:
            self.form[self.part.name] = self.value.decode("utf-8", "replace")
        self.receiving = False

    def on_end(self) -> None:
        self.complete = True

    def _check_text(self, chunk: bytes, final: bool = False) -> None:
        try:
            text = self.text_decoder.decode(chunk, final=final)  # type: ignore[union-attr]
        except UnicodeDecodeError as err:
            raise UnsupportedMediaType("The file is declared as text but is not valid UTF-8") from err
        if "\x00" in text:
            raise UnsupportedMediaType("The file is declared as text but contains binary data")

    def finish(self) -> tuple[_Part, str]:
        if not self.complete:
            raise BadRequest("Malformed multipart body: it ends before its closing boundary")
        if self.file is None:
            raise Unprocessable(f"No file: send multipart/form-data with the file in a '{FIELD_NAME}' field")
        if self.size == 0:
            raise Unprocessable("The file is empty")
        content_type = self.content_type
        if self.text_decoder is not None:
            self._check_text(b"", final=True)
        elif not _SIGNATURES.get(content_type, lambda _: False)(self.head):
            raise UnsupportedMediaType(f"The file's content is not {content_type}")
        return self.file, content_type


def _option(options: dict[bytes, bytes], key: bytes) -> str | None:
    value = options.get(key)
    return value.decode("utf-8", "replace") if value is not None else None


def megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):g} MB"


async def receive_file(
    request: Request, *, max_bytes: int, allowed: Collection[str], spool_dir: Path, idle_seconds: float
) -> ReceivedFile:
    """Stream the request's `file` part to a temporary file in `spool_dir`; the caller deletes it.

    The whole body is bounded (the file, plus MULTIPART_ALLOWANCE for everything around it; at most MAX_PARTS
    parts of at most MAX_PART_HEADER_BYTES of headers each), and a body that sends nothing for `idle_seconds`
    is cut off with 408. Whatever the refusal, the temporary file is gone when this raises."""
    media_type, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if media_type != b"multipart/form-data" or not boundary:
        raise UnsupportedMediaType(f"Send the file as multipart/form-data, in a '{FIELD_NAME}' field")
    max_body = max_bytes + MULTIPART_ALLOWANCE
    declared_length = request.headers.get("content-length", "")
    if declared_length.isdigit() and int(declared_length) > max_body:
        raise PayloadTooLarge(f"The file is larger than the limit of {megabytes(max_bytes)}")
    sink = await asyncio.to_thread(_spool_file, spool_dir)
    path = Path(sink.name)
    try:
        with sink:
            receiver = _FileReceiver(sink, max_bytes, allowed)
            parser = MultipartParser(boundary, _callbacks(receiver))
            body_size = 0
            try:
                async for chunk in _arriving(request, idle_seconds):
                    body_size += len(chunk)
                    if body_size > max_body:
                        raise PayloadTooLarge(f"The upload is larger than the limit of {megabytes(max_body)}")
                    parser.write(chunk)
                parser.finalize()
            except MultipartParseError as err:
                raise BadRequest(f"Malformed multipart body: {err}") from err
        part, content_type = receiver.finish()
        if content_type == "application/json":
            await asyncio.to_thread(_check_json, path)
    except BaseException:
        await asyncio.to_thread(path.unlink, missing_ok=True)
        raise
    assert part.filename is not None
    return ReceivedFile(
        path=path,
        filename=check_filename(part.filename),
        content_type=content_type,
        size=receiver.size,
        sha256=receiver.digest.hexdigest(),
        form=receiver.form,
    )


async def _arriving(request: Request, idle_seconds: float) -> AsyncIterator[bytes]:
    """The body's chunks, each of which must arrive within `idle_seconds` of the one before (408 otherwise)."""
    chunks = request.stream()
    while True:
        try:
            async with asyncio.timeout(idle_seconds):
                chunk = await anext(chunks, None)
        except TimeoutError:
            raise RequestTimeout(f"The upload sent nothing for {idle_seconds:g} seconds and was cut off") from None
        if chunk is None:
            return
        yield chunk


def _spool_file(spool_dir: Path) -> IO[bytes]:
    spool_dir.mkdir(parents=True, exist_ok=True)
    return tempfile.NamedTemporaryFile(dir=spool_dir, prefix="upload-", delete=False)


def _check_json(path: Path) -> None:
    try:
        with path.open("rb") as handle:
            json.load(handle)
    except ValueError as err:
        raise UnsupportedMediaType("The file is declared as JSON but is not valid JSON") from err
    except RecursionError as err:  # json's parser recurses once per level: thousands of `[` exhaust it
        raise Unprocessable("The JSON file is nested too deeply to be read") from err


class UploadSlots:
    """How many uploads each user has in flight in this API process (UPLOADS_PER_USER_AT_ONCE).

    Per process on purpose: what it protects is this process's event loop and spool folder, the count needs
    no network round trip, and it cannot outlive a crashed process the way a shared counter could. With N
    processes, a user may have at most N times the limit in flight in all.
    """

    def __init__(self, per_user: int) -> None:
        self.per_user = per_user
        self.in_flight: Counter[uuid.UUID] = Counter()

    @contextmanager
    def hold(self, user_id: uuid.UUID) -> Iterator[None]:
        """Take one of the user's slots for the block, or refuse with 429 if all are taken."""
        if self.in_flight[user_id] >= self.per_user:
            raise TooManyRequests(
                f"You already have {self.per_user} uploads in progress; send this one when one of them has finished"
            )
        self.in_flight[user_id] += 1
        try:
            yield
        finally:
            self.in_flight[user_id] -= 1
            if not self.in_flight[user_id]:
                del self.in_flight[user_id]


def upload_slot(request: Request, user_id: uuid.UUID) -> AbstractContextManager[None]:
    """Hold one of the user's concurrent-upload slots (see UploadSlots) while the upload is received and kept."""
    slots: UploadSlots = request.app.state.upload_slots
    return slots.hold(user_id)


def _callbacks(receiver: _FileReceiver) -> MultipartCallbacks:
    return {
        "on_part_begin": receiver.on_part_begin,
        "on_part_data": receiver.on_part_data,
        "on_part_end": receiver.on_part_end,
        "on_header_field": receiver.on_header_field,
        "on_header_value": receiver.on_header_value,
        "on_header_end": receiver.on_header_end,
        "on_headers_finished": receiver.on_headers_finished,
        "on_end": receiver.on_end,
    }
