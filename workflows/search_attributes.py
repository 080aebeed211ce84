"""Custom search attributes: how an operator finds a user's workflows in the Temporal UI.

`make run` registers them on the dev server; on a cluster or Temporal Cloud, `statex search-attributes`
prints the commands that create them.
"""

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

USER_ID = SearchAttributeKey.for_keyword("StatexUserId")
RESOURCE_ID = SearchAttributeKey.for_keyword("StatexResourceId")
GATEWAY = SearchAttributeKey.for_keyword("StatexGateway")

ALL = (USER_ID, RESOURCE_ID, GATEWAY)


def for_resource(
    resource_id: object, user_id: object | None = None, gateway: str | None = None
) -> TypedSearchAttributes:
    pairs = [SearchAttributePair(RESOURCE_ID, str(resource_id))]
    if user_id is not None:
        pairs.append(SearchAttributePair(USER_ID, str(user_id)))
    if gateway is not None:
        pairs.append(SearchAttributePair(GATEWAY, gateway))
    return TypedSearchAttributes(pairs)
