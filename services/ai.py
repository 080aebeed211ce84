"""The AI rules every AI service applies: which providers may serve an account, how a call is retried, and a
refusal or a provider's failure as the domain error the client hears."""

from __future__ import annotations

from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError

from activities.ai.errors import AIFailure
from models.api.common import AIProviderName
from models.enums import AIProvider
from models.messages.ai import AICallPolicy
from services.accounts import Account
from services.errors import BadGateway, DomainError, Forbidden, Unavailable, Unprocessable
from settings import Settings
from workflows.ai import ProviderRefused, Refusal, Routing, provider_chain, transcription_chain

_REFUSALS: dict[Refusal, type[DomainError]] = {
    Refusal.PROVIDER_NOT_ALLOWED: Forbidden,
    Refusal.NO_PROVIDER: Unavailable,
    Refusal.NO_TRANSCRIBER: Unavailable,
}
# A provider's verdict: the user's fault (422), ours or the provider's (502), nothing to serve it (503).
_FAILURES: dict[str, type[DomainError]] = {
    AIFailure.CONTENT_REFUSED: Unprocessable,
    AIFailure.BAD_REQUEST: BadGateway,
    AIFailure.AUTH_FAILED: BadGateway,
    AIFailure.REQUEST_REJECTED: BadGateway,
    AIFailure.NOT_CONFIGURED: Unavailable,
    AIFailure.ALL_PROVIDERS_DOWN: Unavailable,
}


def providers_for(settings: Settings, account: Account, model: AIProviderName | None) -> list[AIProvider]:
    """The account's provider chain, `model` first if it names one; Forbidden if the tier may not use it,
    Unavailable if nothing configured may serve the tier."""
    requested = AIProvider(model.upper()) if model else None
    try:
        return provider_chain(Routing.from_settings(settings), account.tier, requested)
    except ProviderRefused as err:
        raise _REFUSALS[err.kind](str(err)) from err


def transcribers_for(settings: Settings, account: Account) -> list[AIProvider]:
    """Who may transcribe the account's voice; Unavailable (naming the setting) if no one may."""
    try:
        return transcription_chain(Routing.from_settings(settings), account.tier)
    except ProviderRefused as err:
        raise _REFUSALS[err.kind](str(err)) from err


def call_policy(settings: Settings) -> AICallPolicy:
    return AICallPolicy(
        timeout_seconds=settings.ai_request_timeout_seconds,
        retry_initial_interval_seconds=settings.ai_retry_initial_interval_seconds,
        retry_maximum_interval_seconds=settings.ai_retry_maximum_interval_seconds,
        retry_maximum_attempts=settings.ai_retry_maximum_attempts,
    )


def failure_message(err: WorkflowFailureError) -> str:
    cause = err.cause
    return f"The AI request failed: {cause.message if isinstance(cause, ApplicationError) else cause}"


def failure_error(err: WorkflowFailureError) -> DomainError:
    """A failed AI workflow as the client's answer: the provider's verdict decides the status (502 if unknown)."""
    failure_type = err.cause.type if isinstance(err.cause, ApplicationError) else None
    return _FAILURES.get(failure_type or "", BadGateway)(failure_message(err))
