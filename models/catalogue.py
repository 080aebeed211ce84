"""The catalogue of what is sold (models/catalogue.toml), loaded into typed models.

Prices live on the server only. A checkout names a tier, a gateway and optionally a currency; the
catalogue answers with the amount in integer minor units, or says clearly why it cannot.
"""

from __future__ import annotations

import tomllib
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, Field, model_validator

from models.api.payments import COINBASE_SHUT_DOWN
from models.enums import PaymentGateway, ServiceTier

CATALOGUE_FILE = Path(__file__).with_name("catalogue.toml")


class NotForSale(ValueError):
    """The tier cannot be bought this way; the message says why and what would work."""


class TierOffer(BaseModel):
    name: str
    description: str
    prices: dict[str, int] = Field(description="Minor units per ISO 4217 currency")


class Price(BaseModel):
    tier: ServiceTier
    tier_name: str
    amount_minor: int = Field(gt=0)
    currency: str
    display: str = Field(examples=["29.00 EUR"])


class Catalogue(BaseModel):
    currencies: dict[str, int] = Field(description="Decimal places of each currency's minor unit")
    gateways: dict[PaymentGateway, list[str]]
    tiers: dict[ServiceTier, TierOffer]

    @model_validator(mode="after")
    def _consistent(self) -> Catalogue:
        missing = set(ServiceTier) - set(self.tiers)
        if missing:
            raise ValueError(f"catalogue lacks tiers {sorted(missing)}")
        for tier, offer in self.tiers.items():
            for currency, amount in offer.prices.items():
                if currency not in self.currencies:
                    raise ValueError(f"{tier}: currency {currency} is not in [currencies]")
                if amount <= 0:
                    raise ValueError(f"{tier}: price in {currency} must be a positive number of minor units")
        return self

    def rank(self, tier: ServiceTier) -> int:
        """Tiers rank in the order the file lists them: after a refund a user keeps the highest still paid for."""
        return list(self.tiers).index(tier)

    def accepted_currencies(self, gateway: PaymentGateway, btcpay_currency: str) -> list[str]:
        if gateway == PaymentGateway.CRYPTO_COINBASE:
            raise NotForSale(COINBASE_SHUT_DOWN)
        if gateway == PaymentGateway.CRYPTO_BTCPAY:
            return [btcpay_currency]
        return self.gateways.get(gateway, [])

    def price(self, tier: ServiceTier, gateway: PaymentGateway, currency: str | None, *, btcpay_currency: str) -> Price:
        accepted = self.accepted_currencies(gateway, btcpay_currency)
        if not accepted:
            raise NotForSale(f"{gateway} sells nothing here")
        chosen = currency or accepted[0]
        if chosen not in accepted:
            raise NotForSale(f"{gateway} takes {', '.join(accepted)} here, not {chosen}")
        offer = self.tiers[tier]
        if chosen not in offer.prices:
            raise NotForSale(
                f"{tier} has no price in {chosen}; it is sold in {', '.join(sorted(offer.prices))}"
                + ("" if currency else f" (the default currency of {gateway} is {chosen})")
            )
        amount = offer.prices[chosen]
        return Price(
            tier=tier, tier_name=offer.name, amount_minor=amount, currency=chosen, display=self.display(amount, chosen)
        )

    def display(self, amount_minor: int, currency: str) -> str:
        return f"{self.decimal(amount_minor, currency)} {currency}"

    def decimal(self, amount_minor: int, currency: str) -> Decimal:
        """Minor units as the decimal amount gateways such as PayPal and BTCPay want ("29.00")."""
        places = self.currencies[currency]
        return (Decimal(amount_minor) / (Decimal(10) ** places)).quantize(Decimal(1) / (Decimal(10) ** places))


@lru_cache
def catalogue() -> Catalogue:
    with CATALOGUE_FILE.open("rb") as handle:
        return Catalogue.model_validate(tomllib.load(handle))
