"""Credentials kept out of everything that leaves a process: log lines, error reports, traces.

`redact` masks tokens in text (a logged URL or header); `scrub` walks a structure (an error report) and
replaces the value of every sensitive key. Log handlers get `RedactCredentials`; Sentry (observability.sentry)
runs `scrub` on each event.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

FILTERED = "[Filtered]"

# sentry-sdk's own EventScrubber defaults (DEFAULT_DENYLIST, DEFAULT_PII_DENYLIST), spelled out so that the log
# redaction needs no SDK import; tests/observability/test_sentry.py checks that they are all still here.
_SENTRY_DEFAULTS = (
    *("password", "passwd", "secret", "api_key", "apikey", "auth", "credentials", "mysql_pwd", "privatekey"),
    *("private_key", "token", "session", "csrftoken", "sessionid", "x_csrftoken", "x_forwarded_for", "set_cookie"),
    *("cookie", "authorization", "proxy-authorization", "x_api_key", "aiohttp_session", "connect.sid"),
    *("csrf_token", "csrf", "_csrf", "_csrf_token", "PHPSESSID", "_session", "symfony", "user_session", "_xsrf"),
    *("XSRF-TOKEN", "x_real_ip", "ip_address", "remote_addr"),
)

# Keys whose values never leave the process, wherever they appear in an event (matched lower-case).
SENSITIVE_KEYS = frozenset(
    {
        *_SENTRY_DEFAULTS,
        "password",
        "new_password",
        "password_hash",
        "access_token",
        "refresh_token",
        "id_token",
        "client_secret",
        "jwt_secret",
        "api_key",
        "apikey",
        "x-api-key",
        "openai_api_key",
        "azure_openai_api_key",
        "aws_secret_access_key",
        "r2_secret_access_key",
        "stripe-signature",
        "paypal-auth-algo",
        "btcpay-sig",
        "card",
        "card_number",
        "cardnumber",
        "cvc",
        "cvv",
        "cvv2",
        "exp_month",
        "exp_year",
        "iban",
        # Outgoing-request breadcrumbs and spans keep the query string apart from the URL.
        "http.query",
        "http.fragment",
    }
)


# Credentials inside free text: a URL's token parameters (download links), a bearer token, a header line.
_CREDENTIAL_PARAM = re.compile(r"(?i)(?<![\w-])((?:access_|refresh_)?token)=[^&#\s\"']*")
_BEARER = re.compile(r"(?i)\b(bearer)\s+[\w.~+/=-]+")
_CREDENTIAL_HEADER = re.compile(r"(?i)\b(authorization|cookie|set-cookie)(\s*:\s*)[^\r\n]*")


_ANY_CREDENTIAL = re.compile(r"(?i)token=|bearer|authorization|cookie")
"""What each pattern above needs to match at all, under the same flags: most text has none of it."""


def redact(text: str) -> str:
    """`?token=eyJ...` -> `?token=[Filtered]`; likewise a bearer token and an Authorization or Cookie line."""
    if _ANY_CREDENTIAL.search(text) is None:  # one search instead of three substitutions, for every log field
        return text
    text = _CREDENTIAL_PARAM.sub(rf"\1={FILTERED}", text)
    text = _CREDENTIAL_HEADER.sub(rf"\1\2{FILTERED}", text)
    return _BEARER.sub(rf"\1 {FILTERED}", text)


class RedactCredentials(logging.Filter):
    """Rewrites a record before any handler sees it. Arguments are redacted one by one, so uvicorn's access
    formatter still gets its five (client, method, path with query, version, status); a message that still
    holds a credential once formatted is replaced by its redacted text."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(arg) if isinstance(arg, str) else arg for arg in record.args)
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a broken format string: logging reports it as it always does
            return True
        if (clean := redact(message)) != message:
            record.msg, record.args = clean, ()
        return True


LOGGERS_TO_REDACT = ("uvicorn", "uvicorn.access", "uvicorn.error")
"""Loggers that do not propagate (uvicorn's access log has its own handler) get the filter themselves."""


def install_log_redaction() -> None:
    """On uvicorn's loggers and on every handler of the root logger; idempotent. Part of create_app, so every
    way of serving the API (`statex api`, `statex run`, the image's uvicorn command, tests) has it. Logger
    filters survive uvicorn's own logging setup, which replaces handlers but not filters."""
    targets: list[logging.Filterer] = [logging.getLogger(name) for name in LOGGERS_TO_REDACT]
    targets += logging.getLogger().handlers  # a queueing handler redacts before it queues, in the logging thread
    for target in targets:
        if not any(isinstance(existing, RedactCredentials) for existing in target.filters):
            target.addFilter(RedactCredentials())


def scrub(value: Any) -> Any:
    """Depth-first: a sensitive key's value is replaced whatever its type; everything else is walked, and a
    credential inside any text (a breadcrumb's logged request line, a URL) is redacted."""
    if isinstance(value, Mapping):
        return {
            key: FILTERED if isinstance(key, str) and key.lower() in SENSITIVE_KEYS else scrub(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [scrub(item) for item in value]
    if isinstance(value, str):
        return redact(value)
    return value
