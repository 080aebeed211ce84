"""AI providers, one module each (ollama, openai, azure, offline), plus what they share.

Every call returns text, tokens, the model used, latency and cost (genai-prices, or an override row in
models/ai_prices.toml), and classifies its failures (errors.py) so that Temporal, not the SDK, retries what a
retry can fix.
"""

import time


def elapsed_ms(started: float) -> int:
    """Milliseconds since `started` (a time.monotonic() reading): the latency each reply reports."""
    return round((time.monotonic() - started) * 1000)
