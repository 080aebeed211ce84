"""What this server can do, read from its settings: AI providers (or templates), voice, gateways, limits."""

from __future__ import annotations

import asyncio

from activities import payments as gateways
from activities.ai.errors import provider_name
from activities.previews import preview_availability
from activities.sandbox import sandbox_availability
from models.api.capabilities import (
    AICapabilities,
    Capabilities,
    FileCapabilities,
    GatewayCapabilities,
    LimitCapabilities,
    PreviewCapabilities,
    VerificationCapabilities,
    VoiceCapabilities,
)
from models.catalogue import catalogue
from models.enums import AIProvider, PaymentGateway
from services.runtime import Service
from workflows.ai import Routing


class CapabilityService(Service):
    async def describe(self) -> Capabilities:
        settings = self.settings
        # Probed on this host with the worker's settings and interpreter (once per process: a jail is started)
        sandbox = await asyncio.to_thread(sandbox_availability, settings.sandbox_bwrap)
        previews = await asyncio.to_thread(preview_availability, settings)
        routing = Routing.from_settings(settings)
        in_order = [provider for provider in routing.fallback_order if provider in routing.configured]
        transcribers = [provider for provider in routing.fallback_order if provider in routing.transcribers]
        offer = catalogue()
        return Capabilities(
            ai=AICapabilities(
                providers=_names(in_order),
                template_answers=not in_order,
                eu_resident_providers=_names([provider for provider in in_order if provider in routing.eu_resident]),
            ),
            voice=VoiceCapabilities(available=bool(transcribers), providers=_names(transcribers)),
            payments={
                gateway: GatewayCapabilities(
                    available=gateways.is_configured(settings, gateway),
                    currencies=offer.accepted_currencies(gateway, settings.btcpay_currency),
                    emulated=gateway == PaymentGateway.STRIPE and settings.stripe_is_emulated,
                )
                for gateway in PaymentGateway
                if gateway != PaymentGateway.CRYPTO_COINBASE
            },
            files=FileCapabilities(
                retention_hours=settings.file_retention_hours,
                max_bytes=settings.file_max_bytes,
                allowed_types=sorted(settings.file_allowed_types),
            ),
            storage=settings.storage_backend,
            email=settings.email_backend,
            limits=LimitCapabilities(
                enabled=settings.rate_limit_enabled,
                ai=settings.rate_limit_ai,
                upload=settings.rate_limit_upload,
                default=settings.rate_limit_default,
            ),
            verification=VerificationCapabilities(available=sandbox.available, reason=sandbox.reason),
            previews=PreviewCapabilities(available=previews.available, reason=previews.reason),
        )


def _names(providers: list[AIProvider]) -> list[str]:
    return [provider_name(provider) for provider in providers]
