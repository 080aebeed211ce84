"""A local AI provider for the tests: the OpenAI, Azure OpenAI and Ollama wire formats on one 127.0.0.1 port.

The real `openai` and `ollama` clients talk to it over HTTP. It records every call it receives, and can be
told what to answer (`answer("openai", "text", ...)`: the next chat answers, in order; `answer_to(role, ...)`:
the next chats with that system prompt, whichever provider, so that agents asked at the same time each get
their own script), told to fail in
sequence (`fail("openai", 429, 500)`: the next two OpenAI calls fail so, then it answers),
to refuse under a content policy, to answer slowly (a bounded delay), or to hold the chats of some roles until
one of each is in flight (`meet(role, ...)`: proof that agents are asked at the same time).

    OpenAI   POST /v1/chat/completions, POST /v1/audio/transcriptions
    Azure    POST /openai/deployments/{deployment}/chat/completions?api-version=...
             POST /openai/deployments/{deployment}/audio/transcriptions?api-version=...
    Ollama   POST /api/chat
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import uvicorn
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from settings import Settings

Provider = Literal["openai", "azure", "ollama"]
# A scripted answer: an HTTP status to fail with, "content_filter" (refused prompt: a 400 with that code,
# as Azure sends), or "filtered_answer" (a 200 whose answer was withheld: finish_reason content_filter).
Failure = int | Literal["content_filter", "filtered_answer"]

PROMPT_TOKENS = 1_234
COMPLETION_TOKENS = 567
AUDIO_SECONDS = 90.5
MEETING_SECONDS = 20.0
"""How long a chat of a `meet` role waits for the others before it is refused (a 400) as asked alone."""


@dataclass
class RecordedCall:
    provider: Provider
    kind: Literal["chat", "transcription"]
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def prompt(self) -> str:
        return "\n".join(str(message.get("content", "")) for message in self.body.get("messages", []))


@dataclass
class FakeAIServer:
    url: str = ""
    calls: list[RecordedCall] = field(default_factory=list)
    prompt_tokens: int = PROMPT_TOKENS
    completion_tokens: int = COMPLETION_TOKENS
    cached_tokens: int = 0
    """Of the prompt tokens, how many the answer reports as served from the provider's cache."""
    _answers: dict[str, deque[str]] = field(default_factory=dict)
    _role_answers: dict[str, deque[str]] = field(default_factory=dict)
    _role_delays: dict[str, deque[float]] = field(default_factory=dict)
    _meeting: frozenset[str] = frozenset()
    arrived: set[str] = field(default_factory=set)
    """Of the `meet` roles, those whose chat has arrived."""
    _failures: dict[str, deque[Failure]] = field(default_factory=dict)
    _delays: dict[str, deque[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(self, provider: Provider, *failures: Failure) -> None:
        """The provider's next calls fail like this, in order; then it answers normally again."""
        with self._lock:
            self._failures.setdefault(provider, deque()).extend(failures)

    def answer(self, provider: Provider, *texts: str) -> None:
        """The provider's next chat answers say these texts, in order; then "<provider> says hello" again."""
        with self._lock:
            self._answers.setdefault(provider, deque()).extend(texts)

    def answer_to(self, role: str, *texts: str) -> None:
        """The next chats whose system prompt is `role` say these texts, in order, before any provider script."""
        with self._lock:
            self._role_answers.setdefault(role, deque()).extend(texts)

    def meet(self, *roles: str) -> None:
        """Chats whose system prompt is one of `roles` answer only once one of each is in flight; one still alone
        after MEETING_SECONDS is refused as an invalid request, which no retry or fallback repeats."""
        with self._lock:
            self._meeting = frozenset(roles)

    def fail_always(self, provider: Provider, status: int, times: int = 100) -> None:
        self.fail(provider, *([status] * times))

    def slow(self, provider: Provider, *seconds: float) -> None:
        """The provider's next calls wait this long before answering (each bounded by the test's choice)."""
        with self._lock:
            self._delays.setdefault(provider, deque()).extend(seconds)

    def slow_to(self, role: str, *seconds: float) -> None:
        """The next chats whose system prompt is `role` wait this long, whichever provider (before any `slow`)."""
        with self._lock:
            self._role_delays.setdefault(role, deque()).extend(seconds)

    def calls_to(self, provider: Provider) -> list[RecordedCall]:
        return [call for call in list(self.calls) if call.provider == provider]

    def _next(self, queues: dict[str, deque[Any]], key: str) -> Any:
        with self._lock:
            queue = queues.get(key)
            return queue.popleft() if queue else None

    def _text(self, provider: Provider, body: dict[str, Any]) -> str:
        with self._lock:
            by_role = self._role_answers.get(_role(body))
            scripted = by_role.popleft() if by_role else None
        if scripted is None:
            scripted = self._next(self._answers, provider)
        return f"{provider} says hello" if scripted is None else str(scripted)

    async def _receive(self, request: Request, provider: Provider, kind: Literal["chat", "transcription"]) -> Any:
        """Record the call, then wait and fail as scripted; None means: answer normally."""
        if request.headers.get("content-type", "").startswith("multipart/"):
            form = await request.form()
            body: dict[str, Any] = {
                key: {"filename": value.filename, "size": value.size, "content_type": value.content_type}
                if isinstance(value, UploadFile)
                else value
                for key, value in form.items()
            }
        else:
            body = await request.json()
        self.calls.append(
            RecordedCall(provider, kind, request.url.path, dict(request.query_params), dict(request.headers), body)
        )
        role = _role(body)
        delay = self._next(self._role_delays, role)
        if delay is None:
            delay = self._next(self._delays, provider)
        if delay is not None:
            await asyncio.sleep(delay)
        if role in self._meeting:
            self.arrived.add(role)
            deadline = time.monotonic() + MEETING_SECONDS
            while not self._meeting <= self.arrived:
                if time.monotonic() > deadline:
                    return 400
                await asyncio.sleep(0.01)
        return self._next(self._failures, provider)

    # --- OpenAI and Azure OpenAI (one format; Azure puts the deployment in the path) ---------------------

    async def chat_completions(self, request: Request) -> Response:
        provider: Provider = "azure" if "deployment" in request.path_params else "openai"
        failure = await self._receive(request, provider, "chat")
        if failure is not None and failure != "filtered_answer":
            return _openai_error(failure)
        body = await request.json()
        model = request.path_params.get("deployment") or body["model"]
        return JSONResponse(
            {
                "id": f"chatcmpl-{len(self.calls)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "" if failure else self._text(provider, body)},
                        "finish_reason": "content_filter" if failure else "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": self.prompt_tokens,
                    "completion_tokens": self.completion_tokens,
                    "total_tokens": self.prompt_tokens + self.completion_tokens,
                    "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
                },
            }
        )

    async def transcriptions(self, request: Request) -> Response:
        provider: Provider = "azure" if "deployment" in request.path_params else "openai"
        failure = await self._receive(request, provider, "transcription")
        if failure is not None:
            return _openai_error(failure)
        return JSONResponse(
            {
                "task": "transcribe",
                "language": "english",
                "duration": AUDIO_SECONDS,
                "text": f"{provider} heard: an app for booking climbing gyms",
                "segments": [],
            }
        )

    # --- Ollama --------------------------------------------------------------------------------------------

    async def ollama_chat(self, request: Request) -> Response:
        failure = await self._receive(request, "ollama", "chat")
        if isinstance(failure, int):
            return JSONResponse({"error": f"scripted failure {failure}"}, status_code=failure)
        body = await request.json()
        return JSONResponse(
            {
                "model": body["model"],
                "created_at": "2026-01-01T00:00:00.000000Z",
                "message": {"role": "assistant", "content": self._text("ollama", body)},
                "done": True,
                "done_reason": "stop",
                "total_duration": 1_000_000,
                "prompt_eval_count": self.prompt_tokens,
                "eval_count": self.completion_tokens,
            }
        )

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
                Route("/v1/audio/transcriptions", self.transcriptions, methods=["POST"]),
                Route("/openai/deployments/{deployment}/chat/completions", self.chat_completions, methods=["POST"]),
                Route("/openai/deployments/{deployment}/audio/transcriptions", self.transcriptions, methods=["POST"]),
                Route("/api/chat", self.ollama_chat, methods=["POST"]),
            ]
        )


def _role(body: dict[str, Any]) -> str:
    """A chat's system prompt: which agent is asking."""
    messages = body.get("messages") or [{}]
    return str(messages[0].get("content", "")) if messages[0].get("role") == "system" else ""


def _openai_error(failure: Failure) -> JSONResponse:
    if failure == "content_filter":
        error = {
            "message": "The response was filtered due to the prompt triggering content management policy.",
            "type": None,
            "param": "prompt",
            "code": "content_filter",
            "status": 400,
        }
        return JSONResponse({"error": error}, status_code=400)
    assert isinstance(failure, int)
    kind = {400: "invalid_request_error", 401: "invalid_api_key", 429: "rate_limit_exceeded"}.get(
        failure, "server_error"
    )
    return JSONResponse(
        {"error": {"message": f"scripted failure {failure}", "type": kind, "param": None, "code": kind}},
        status_code=failure,
    )


@contextmanager
def running_fake_ai() -> Iterator[FakeAIServer]:
    """Serve on a free 127.0.0.1 port in a thread of its own, so a slow answer never blocks the test's loop."""
    fake = FakeAIServer()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    fake.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(fake.app(), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the fake AI server did not start")
        time.sleep(0.01)
    try:
        yield fake
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


# Prices the tests compute by hand (the shipped table may change; these do not).
TEST_PRICES = """
[chat.openai."gpt-test"]
input_usd_per_million_tokens = "2.50"
output_usd_per_million_tokens = "10.00"
checked = 2026-01-01
source = "test"

[chat.azure."gpt-test-eu"]
input_usd_per_million_tokens = "0.165"
output_usd_per_million_tokens = "0.66"
checked = 2026-01-01
source = "test"

[chat.ollama."llama-test"]
input_usd_per_million_tokens = "0.10"
output_usd_per_million_tokens = "0.20"
checked = 2026-01-01
source = "test"

[transcription.openai."whisper-1"]
usd_per_audio_minute = "0.006"
checked = 2026-01-01
source = "test"

[transcription.azure."whisper"]
usd_per_audio_minute = "0.006"
checked = 2026-01-01
source = "test"
"""


def with_fake_providers(settings: Settings, fake: FakeAIServer, **overrides: Any) -> Settings:
    """Every provider configured against the fake, test prices, and retries short enough for a test."""
    prices = settings.data_dir / "ai_prices.toml"
    prices.parent.mkdir(parents=True, exist_ok=True)
    prices.write_text(TEST_PRICES)
    values: dict[str, Any] = {
        "ai_price_table": prices,
        "ollama_host": fake.url,
        "ollama_model": "llama-test",
        "openai_api_key": SecretStr("sk-test-openai"),
        "openai_base_url": f"{fake.url}/v1",
        "openai_chat_model": "gpt-test",
        "azure_openai_endpoint": fake.url,
        "azure_openai_api_key": SecretStr("azure-test-key"),
        "azure_openai_api_version": "2024-10-21",
        "azure_openai_chat_deployment": "eu-chat",
        "azure_openai_chat_model": "gpt-test-eu",
        "azure_openai_transcription_deployment": "eu-whisper",
        "ai_request_timeout_seconds": 5.0,
        "ai_retry_initial_interval_seconds": 0.05,
        "ai_retry_maximum_interval_seconds": 0.1,
        "ai_retry_maximum_attempts": 3,
    }
    return settings.model_copy(update={**values, **overrides})
