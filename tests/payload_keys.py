"""The tests' payload key ring: every test client, worker, replayer and the history recorder encrypt with it.

Fixed rather than random: histories recorded with it (tests/replay/record.py) must still decode later. A test
key, worthless outside the tests.
"""

from __future__ import annotations

import base64

from temporalio.converter import DataConverter

from settings import Settings
from workflows.codec import data_converter

TEST_KEY_ID = "test-2026"
PAYLOAD_KEYS = f"{TEST_KEY_ID}:{base64.b64encode(b'statex-test-payload-key-32bytes!').decode()}"


def encrypted_converter(keys: str = PAYLOAD_KEYS, key_id: str | None = None) -> DataConverter:
    settings = Settings(_env_file=None, environment="test", payload_keys=keys, payload_key_id=key_id)  # type: ignore[call-arg]
    return data_converter(settings)


CONVERTER = encrypted_converter()
"""What the app and worker under test use too (the `settings` fixture carries PAYLOAD_KEYS)."""
