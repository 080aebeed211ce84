"""How workflows reach a model: which providers may serve a user (pure), and walking them in order.

`provider_chain` is the provider choice: a request may name a provider, otherwise the user's service tier
decides. EU_COMPLIANCE users are served only by providers marked EU-resident, and never fall back to
another; everyone else falls back along the configured order. Providers without configuration are
skipped; with none configured at all, the offline template serves (the embedded default).

`ModelCaller` walks the chain inside a workflow: each provider is one activity with its retry policy, so
the Temporal UI shows every attempt; only a provider that stays down after its retries hands over to the
next one. A non-retryable failure (bad request, credentials, content policy) stops the walk.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, RetryState

from workflows.timeouts import HEARTBEAT

with workflow.unsafe.imports_passed_through():
    from activities.ai.azure import AzureActivities
    from activities.ai.errors import AIFailure, provider_name
    from activities.ai.offline import OfflineActivities
    from activities.ai.ollama import OllamaActivities
    from activities.ai.openai import OpenAIActivities
    from models.enums import AIProvider, ServiceTier
    from models.messages.ai import AICallPolicy, ModelCall, ModelReply, Transcript, TranscriptionCall

if TYPE_CHECKING:
    from settings import Settings

CHAT_ACTIVITIES: dict[AIProvider, Callable[..., Any]] = {
    AIProvider.OLLAMA: OllamaActivities.chat,
    AIProvider.OPENAI: OpenAIActivities.chat,
    AIProvider.AZURE: AzureActivities.chat,
    AIProvider.OFFLINE: OfflineActivities.chat,
}
TRANSCRIPTION_ACTIVITIES: dict[AIProvider, Callable[..., Any]] = {
    AIProvider.OPENAI: OpenAIActivities.transcribe,
    AIProvider.AZURE: AzureActivities.transcribe,
}
_TIMEOUT_MARGIN = timedelta(seconds=10)  # the SDK's own timeout fires first; Temporal's is the backstop


class Refusal(StrEnum):
    """Why no provider may serve a request; the caller (a service) decides what its client hears."""

    PROVIDER_NOT_ALLOWED = "provider_not_allowed"
    """The request named a provider the user's tier may not use (a non-EU one for EU_COMPLIANCE)."""
    NO_PROVIDER = "no_provider"
    """No configured provider may serve the user's tier."""
    NO_TRANSCRIBER = "no_transcriber"
    """Voice input, but no configured provider may transcribe it for the user's tier."""


class ProviderRefused(Exception):
    """No provider may serve this request, for the reason `kind`."""

    def __init__(self, message: str, kind: Refusal) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Routing:
    configured: frozenset[AIProvider]
    transcribers: frozenset[AIProvider]
    eu_resident: frozenset[AIProvider]
    fallback_order: tuple[AIProvider, ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> Routing:
        configured = set()
        if settings.ollama_host:
            configured.add(AIProvider.OLLAMA)
        if settings.openai_api_key is not None:
            configured.add(AIProvider.OPENAI)
        if settings.azure_openai_api_key is not None and settings.azure_openai_endpoint:
            configured.add(AIProvider.AZURE)
        transcribers = {AIProvider.OPENAI} & configured
        if AIProvider.AZURE in configured and settings.azure_openai_transcription_deployment:
            transcribers.add(AIProvider.AZURE)
        return cls(
            configured=frozenset(configured),
            transcribers=frozenset(transcribers),
            eu_resident=frozenset(AIProvider(name.upper()) for name in settings.ai_eu_resident_providers),
            fallback_order=tuple(AIProvider(name.upper()) for name in settings.ai_fallback_order),
        )


def provider_chain(routing: Routing, user_tier: ServiceTier, requested: AIProvider | None = None) -> list[AIProvider]:
    """The providers to try for one chat call, in order. Raises ProviderRefused when none may serve."""
    if not routing.configured:
        return [AIProvider.OFFLINE]
    eu_only = user_tier == ServiceTier.EU_COMPLIANCE
    if eu_only and requested is not None and requested not in routing.eu_resident:
        raise ProviderRefused(
            f"{provider_name(requested)} is not EU-resident: EU_COMPLIANCE accounts are served only by "
            f"{_names(routing.eu_resident & routing.configured) or 'EU-resident providers, and none is configured'}",
            Refusal.PROVIDER_NOT_ALLOWED,
        )
    chain = [
        provider
        for provider in routing.fallback_order
        if provider in routing.configured and (not eu_only or provider in routing.eu_resident)
    ]
    if requested in chain:
        chain = [requested, *(provider for provider in chain if provider != requested)]
    if not chain:
        needed = "an EU-resident AI provider (AI_EU_RESIDENT_PROVIDERS)" if eu_only else "an AI provider"
        raise ProviderRefused(
            f"No AI provider can serve this account: {needed} must be configured", Refusal.NO_PROVIDER
        )
    return chain


def transcription_chain(routing: Routing, user_tier: ServiceTier) -> list[AIProvider]:
    """Who may transcribe a user's voice: OpenAI or Azure Whisper; EU_COMPLIANCE users EU-resident ones only."""
    eu_only = user_tier == ServiceTier.EU_COMPLIANCE
    chain = [
        provider
        for provider in routing.fallback_order
        if provider in routing.transcribers and (not eu_only or provider in routing.eu_resident)
    ]
    if not chain:
        setting = (
            "AZURE_OPENAI_TRANSCRIPTION_DEPLOYMENT"
            if eu_only
            else "OPENAI_API_KEY or AZURE_OPENAI_TRANSCRIPTION_DEPLOYMENT"
        )
        raise ProviderRefused(
            f"Voice input is not available: set {setting} to enable transcription", Refusal.NO_TRANSCRIBER
        )
    return chain


def _names(providers: frozenset[AIProvider]) -> str:
    return ", ".join(sorted(provider_name(provider) for provider in providers))


def retry_policy(policy: AICallPolicy) -> RetryPolicy:
    return RetryPolicy(
        initial_interval=timedelta(seconds=policy.retry_initial_interval_seconds),
        maximum_interval=timedelta(seconds=policy.retry_maximum_interval_seconds),
        maximum_attempts=policy.retry_maximum_attempts,
    )


Answer = TypeVar("Answer", ModelReply, Transcript)


class ModelCaller:
    """Walks a provider chain from inside a workflow; `trying` and `tried` feed the workflow's query. Several walks
    may run at once (a stage's agents): each provider under way is counted until its own attempt ends."""

    def __init__(self, policy: AICallPolicy) -> None:
        self.policy = policy
        self.asking: list[AIProvider] = []
        """The providers being asked right now, in the order they were asked (one entry per call in flight)."""
        self.tried: list[AIProvider] = []

    @property
    def trying(self) -> AIProvider | None:
        """The provider asked longest ago of those still answering."""
        return self.asking[0] if self.asking else None

    async def ask(self, providers: Sequence[AIProvider], call: ModelCall, *, purpose: str) -> ModelReply:
        return await self._walk(CHAT_ACTIVITIES, providers, call, ModelReply, purpose, self.policy.timeout_seconds)

    async def transcribe(
        self, providers: Sequence[AIProvider], call: TranscriptionCall, *, timeout_seconds: float
    ) -> Transcript:
        """The same walk over transcription_chain's providers; audio takes longer than text, hence its own timeout."""
        return await self._walk(TRANSCRIPTION_ACTIVITIES, providers, call, Transcript, "transcription", timeout_seconds)

    async def _walk(
        self,
        activities: Mapping[AIProvider, Callable[..., Any]],
        providers: Sequence[AIProvider],
        argument: ModelCall | TranscriptionCall,
        result_type: type[Answer],
        purpose: str,
        timeout_seconds: float,
    ) -> Answer:
        failures: list[str] = []
        for provider in providers:
            self.asking.append(provider)
            self.tried.append(provider)
            try:
                return await workflow.execute_activity(  # type: ignore[call-overload]  # result_type with a callable
                    activities[provider],
                    argument,
                    result_type=result_type,
                    start_to_close_timeout=timedelta(seconds=timeout_seconds) + _TIMEOUT_MARGIN,
                    heartbeat_timeout=HEARTBEAT,
                    retry_policy=retry_policy(self.policy),
                    summary=f"{purpose} via {provider_name(provider)}",
                )
            except ActivityError as err:
                name = provider_name(provider)
                if err.retry_state == RetryState.NON_RETRYABLE_FAILURE:
                    workflow.logger.warning("%s via %s refused, no fallback: %s", purpose, name, _reason(err))
                    raise _stop(err) from err
                workflow.logger.warning("%s via %s failed after retries: %s", purpose, name, _reason(err))
                failures.append(f"{name}: {_reason(err)}")
            finally:
                self.asking.remove(provider)
        workflow.logger.error("%s: no AI provider answered (%s)", purpose, ", ".join(map(provider_name, providers)))
        raise ApplicationError(
            "No AI provider answered after retries: " + "; ".join(failures),
            type=AIFailure.ALL_PROVIDERS_DOWN,
            non_retryable=True,
        )


def _reason(err: ActivityError) -> str:
    return str(err.cause) if err.cause is not None else str(err)


def _stop(err: ActivityError) -> ApplicationError:
    """The provider's own verdict (type and message), as the workflow's failure."""
    cause = err.cause
    if isinstance(cause, ApplicationError):
        return ApplicationError(cause.message, type=cause.type, non_retryable=True)
    return ApplicationError(_reason(err), type=AIFailure.PROVIDER_ERROR, non_retryable=True)
