"""Fixtures for the AI tests: the local fake provider, and settings that point every provider at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fakes.ai_server import FakeAIServer, running_fake_ai, with_fake_providers

from settings import Settings


@pytest.fixture
def fake_ai() -> Iterator[FakeAIServer]:
    with running_fake_ai() as fake:
        yield fake


@pytest.fixture
def ai_settings(settings: Settings, fake_ai: FakeAIServer) -> Settings:
    return with_fake_providers(settings, fake_ai)
