"""Custom search attributes: how an operator finds a user's workflows in the Temporal UI.

`make run` registers them on the dev server; on a cluster or Temporal Cloud, `statex search-attributes`
prints the commands that create them. Their values are opaque: ids, a gateway's name, and for contact
messages a keyed hash of the sender's address (whoever reads Temporal cannot reverse it, erasure can find it).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

from settings import Settings

USER_ID = SearchAttributeKey.for_keyword("StatexUserId")
RESOURCE_ID = SearchAttributeKey.for_keyword("StatexResourceId")
GATEWAY = SearchAttributeKey.for_keyword("StatexGateway")
CONTACT_KEY = SearchAttributeKey.for_keyword("StatexContactKey")

ALL = (USER_ID, RESOURCE_ID, GATEWAY, CONTACT_KEY)


def cli_type(key: SearchAttributeKey[Any]) -> str:
    """The Temporal CLI's spelling of the type: KEYWORD_LIST -> KeywordList."""
    return key.indexed_value_type.name.title().replace("_", "")


def for_resource(
    resource_id: object, user_id: object | None = None, gateway: str | None = None, contact_key: str | None = None
) -> TypedSearchAttributes:
    pairs = [SearchAttributePair(RESOURCE_ID, str(resource_id))]
    if user_id is not None:
        pairs.append(SearchAttributePair(USER_ID, str(user_id)))
    if gateway is not None:
        pairs.append(SearchAttributePair(GATEWAY, gateway))
    if contact_key is not None:
        pairs.append(SearchAttributePair(CONTACT_KEY, contact_key))
    return TypedSearchAttributes(pairs)


def contact_key(settings: Settings, address: str) -> str:
    """HMAC-SHA256 of the normalised address, under CONTACT_KEY_SECRET (else a key derived from JWT_SECRET): the
    same address always gives the same key, and without the secret the key names nobody."""
    secret = settings.contact_key_secret or settings.jwt_secret
    key = hmac.new(secret.get_secret_value().encode(), b"statex contact key", hashlib.sha256).digest()
    return hmac.new(key, address.strip().lower().encode(), hashlib.sha256).hexdigest()
