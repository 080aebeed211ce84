"""Thin adapters to the outside world, one module per system. Idempotent: Temporal may run them twice."""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from botocore.config import Config as BotoConfig


def boto_config(**options: Any) -> "BotoConfig":
    """A boto3 client's config with the SDK's retries off: Temporal retries the activity, so each attempt shows
    in the workflow's history and waits by the activity's retry policy. In botocore `max_attempts` counts the
    retries AFTER the first request (max_attempts=1 means two requests); `total_max_attempts` counts the first
    request too, so 1 means exactly one request. A fresh dict each time: botocore rewrites it in place.
    botocore is imported here, by the R2 and SES clients only: the API with local storage never loads it."""
    from botocore.config import Config as BotoConfig

    return BotoConfig(retries={"total_max_attempts": 1, "mode": "standard"}, **options)
