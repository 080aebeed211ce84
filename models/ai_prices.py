"""The AI price table (models/ai_prices.toml) as typed models, and the cost of a call in micro-dollars.

Prices are data, not code, so a price change is a one-line edit with its date. Costs are computed in
Decimal from the exact figures and rounded once, half up, to whole micro-dollars (the unit every AI
cost is stored in), so a bill of many calls adds up to the cent.
"""

from __future__ import annotations

import tomllib
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from models.enums import AITier

PRICE_TABLE = Path(__file__).with_name("ai_prices.toml")
ANY_MODEL = "*"
_MICROS_PER_USD = Decimal(1_000_000)
_SECONDS_PER_MINUTE = Decimal(60)

Provider = Literal["ollama", "openai", "azure"]
Price = TypeVar("Price", "TokenPrice", "AudioPrice")


def _not_a_float(value: object) -> object:
    if isinstance(value, float):
        raise ValueError('write prices as strings ("0.15"), not TOML floats, so nothing is rounded on the way in')
    return value


Usd = Annotated[Decimal, BeforeValidator(_not_a_float), Field(ge=0)]


class PriceNotFound(LookupError):
    """A configured model has no row in the table: its calls could not be costed."""


class _Checked(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    checked: date
    source: str


class TokenPrice(_Checked):
    input_usd_per_million_tokens: Usd
    output_usd_per_million_tokens: Usd

    def cost_micros(self, input_tokens: int, output_tokens: int) -> int:
        """USD per million tokens times tokens is exactly micro-dollars."""
        micros = input_tokens * self.input_usd_per_million_tokens + output_tokens * self.output_usd_per_million_tokens
        return int(micros.quantize(Decimal(1), rounding=ROUND_HALF_UP))


class AudioPrice(_Checked):
    usd_per_audio_minute: Usd

    def cost_micros(self, seconds: Decimal) -> int:
        micros = seconds * self.usd_per_audio_minute * _MICROS_PER_USD / _SECONDS_PER_MINUTE
        return int(micros.quantize(Decimal(1), rounding=ROUND_HALF_UP))


class PriceTable(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    chat: dict[Provider, dict[str, TokenPrice]] = Field(default_factory=dict)
    transcription: dict[Provider, dict[str, AudioPrice]] = Field(default_factory=dict)

    def chat_price(self, tier: AITier, model: str) -> TokenPrice:
        return _lookup(self.chat, "chat", tier, model)

    def transcription_price(self, tier: AITier, model: str) -> AudioPrice:
        return _lookup(self.transcription, "transcription", tier, model)


def _lookup(section: dict[Provider, dict[str, Price]], name: str, tier: AITier, model: str) -> Price:
    provider = tier.value.lower()
    rows = section.get(provider, {})  # type: ignore[call-overload]
    price = rows.get(model) or rows.get(ANY_MODEL)
    if price is None:
        row = f'[{name}.{provider}."{model}"]'
        raise PriceNotFound(f"no {name} price for {provider} model {model!r}: add {row} to {PRICE_TABLE.name}")
    return price


def load_prices(path: Path | None = None) -> PriceTable:
    """The table at `path`, else the one shipped beside this module."""
    with (path or PRICE_TABLE).open("rb") as handle:
        return PriceTable.model_validate(tomllib.load(handle))
