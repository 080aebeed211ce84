"""What a call to a model costs, in micro-dollars: Pydantic's maintained `genai-prices` database, with the local
table (models/ai_prices.toml) as an override.

Chat calls are priced by `genai-prices` (input, output and cached input per provider and model, kept up to date
by its maintainers) unless the table has a row for the model: that row wins, for deployments with negotiated
prices or models genai-prices does not know (self-hosted Ollama: "*" at 0). Transcription is priced per audio
minute from the table only (genai-prices prices tokens, not minutes). Costs are computed in Decimal and
rounded once, half up, to whole micro-dollars (the unit every AI cost is stored in), so a bill of many calls
adds up to the cent.
"""

from __future__ import annotations

import tomllib
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Annotated, Literal, Protocol, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from models.enums import AIProvider

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


def _micros(usd: Decimal) -> int:
    return int((usd * _MICROS_PER_USD).quantize(Decimal(1), rounding=ROUND_HALF_UP))


class ChatPrice(Protocol):
    def cost_micros(self, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0) -> int:
        """`input_tokens` counts every prompt token, `cached_input_tokens` the part the provider served from cache."""
        ...


class TokenPrice(_Checked):
    """An override row: a negotiated price. Cached input costs the input price unless the row says otherwise."""

    input_usd_per_million_tokens: Usd
    output_usd_per_million_tokens: Usd
    cached_input_usd_per_million_tokens: Usd | None = None

    def cost_micros(self, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0) -> int:
        """USD per million tokens times tokens is exactly micro-dollars."""
        cached_price = self.cached_input_usd_per_million_tokens
        if cached_price is None:
            cached_price = self.input_usd_per_million_tokens
        micros = (
            (input_tokens - cached_input_tokens) * self.input_usd_per_million_tokens
            + cached_input_tokens * cached_price
            + output_tokens * self.output_usd_per_million_tokens
        )
        return int(micros.quantize(Decimal(1), rounding=ROUND_HALF_UP))


class GenaiPrice(BaseModel):
    """A model as `genai-prices` prices it (its bundled snapshot: no network at run time)."""

    model_config = ConfigDict(frozen=True)

    provider: str
    model: str

    def cost_micros(self, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0) -> int:
        import genai_prices  # here, not at the top: only the worker prices a call; the API never loads it

        usage = genai_prices.Usage(
            input_tokens=input_tokens, output_tokens=output_tokens, cache_read_tokens=cached_input_tokens or None
        )
        return _micros(genai_prices.calc_price(usage, self.model, provider_id=self.provider).total_price)


class AudioPrice(_Checked):
    usd_per_audio_minute: Usd

    def cost_micros(self, seconds: Decimal) -> int:
        micros = seconds * self.usd_per_audio_minute * _MICROS_PER_USD / _SECONDS_PER_MINUTE
        return int(micros.quantize(Decimal(1), rounding=ROUND_HALF_UP))


class PriceTable(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    chat: dict[Provider, dict[str, TokenPrice]] = Field(default_factory=dict)
    transcription: dict[Provider, dict[str, AudioPrice]] = Field(default_factory=dict)

    def chat_price(self, provider: AIProvider, model: str) -> ChatPrice:
        """The table's row if it has one (an override), else genai-prices' price; PriceNotFound if neither."""
        try:
            return _lookup(self.chat, "chat", provider, model)
        except PriceNotFound as unknown:
            price = GenaiPrice(provider=provider.value.lower(), model=model)
            try:
                price.cost_micros(0, 0)
            except LookupError:
                raise PriceNotFound(f"{unknown} (genai-prices does not know it either)") from None
            return price

    def transcription_price(self, provider: AIProvider, model: str) -> AudioPrice:
        return _lookup(self.transcription, "transcription", provider, model)


def _lookup(section: dict[Provider, dict[str, Price]], name: str, provider: AIProvider, model: str) -> Price:
    key = provider.value.lower()
    rows = section.get(key, {})  # type: ignore[call-overload]
    price = rows.get(model) or rows.get(ANY_MODEL)
    if price is None:
        row = f'[{name}.{key}."{model}"]'
        raise PriceNotFound(f"no {name} price for {key} model {model!r}: add {row} to {PRICE_TABLE.name}")
    return price


def load_prices(path: Path | None = None) -> PriceTable:
    """The table at `path`, else the one shipped beside this module."""
    with (path or PRICE_TABLE).open("rb") as handle:
        return PriceTable.model_validate(tomllib.load(handle))
