"""GET /api/capabilities: what this server can do, so a frontend can adapt instead of guessing."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from models.enums import PaymentGateway


class AICapabilities(BaseModel):
    providers: list[str] = Field(description="Configured providers, in fallback order; empty: offline templates")
    template_answers: bool = Field(description="True when answers come from the offline template, not a model")
    eu_resident_providers: list[str] = Field(description="Those that serve EU_COMPLIANCE accounts")


class VoiceCapabilities(BaseModel):
    available: bool
    providers: list[str] = Field(description="Who transcribes, in order")


class GatewayCapabilities(BaseModel):
    available: bool = Field(description="Configured on this server: a checkout through it can work")
    currencies: list[str] = Field(description="ISO 4217 codes it takes; the first is its default")
    emulated: bool = Field(
        default=False, description="A local emulator (no real money), as `statex run` starts for Stripe with no key"
    )


class LimitCapabilities(BaseModel):
    enabled: bool
    ai: str = Field(examples=["2/day"])
    upload: str = Field(examples=["10/day"])
    default: str = Field(examples=["100/day"])


class FileCapabilities(BaseModel):
    retention_hours: int
    max_bytes: int
    allowed_types: list[str]


class VerificationCapabilities(BaseModel):
    available: bool = Field(
        description="Generated code is checked in the bubblewrap sandbox; false: prototypes complete not verified"
    )
    reason: str | None = Field(
        default=None,
        description="Why it is unavailable (bubblewrap missing, no namespaces); when available, what it runs without "
        "(no per-run cgroups)",
    )


class PreviewCapabilities(BaseModel):
    available: bool = Field(
        description="A verified prototype's app is started in the sandbox and pictured by a headless browser "
        "(PREVIEW.png, `preview_link`); false: prototypes complete with `preview: null` and the reason"
    )
    reason: str | None = Field(
        default=None, description="Why not: turned off (PREVIEWS_ENABLED), no sandbox, no browser (PREVIEW_BROWSER)"
    )


class Capabilities(BaseModel):
    ai: AICapabilities
    voice: VoiceCapabilities
    payments: dict[PaymentGateway, GatewayCapabilities]
    files: FileCapabilities
    storage: Literal["local", "r2"]
    email: Literal["outbox", "ses"]
    limits: LimitCapabilities
    verification: VerificationCapabilities
    previews: PreviewCapabilities
