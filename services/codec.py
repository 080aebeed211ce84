"""The codec server's rules: who may decode workflow payloads, and the decoding and encoding themselves.

Decoding hands out every customer's personal data, so only operators may: a token of their own
(CODEC_OPERATOR_TOKEN), never a customer's access token. On the embedded default (development, no token set)
the dev server's UI on this machine may call without one, so that `make run` shows decoded inputs.
"""

from __future__ import annotations

from collections.abc import Sequence

from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

from services.errors import BadRequest, Unauthorized, Unavailable
from services.runtime import Service
from services.security import bearer_matches
from settings import Settings
from workflows.codec import UndecodablePayload

LOOPBACK = frozenset({"127.0.0.1", "::1"})


def operator_may_call(settings: Settings, authorization: str | None, client_host: str | None) -> bool:
    token = settings.codec_operator_token
    if token is None:
        return settings.environment == "development" and authorization is None and client_host in LOOPBACK
    return bearer_matches(authorization, token.get_secret_value())


class CodecService(Service):
    def admit(self, authorization: str | None, client_host: str | None) -> None:
        if not operator_may_call(self.settings, authorization, client_host):
            raise Unauthorized("The codec server wants the operators' token: 'Authorization: Bearer <token>'")

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Payloads that are not encrypted come back as they are (the UI sends everything it shows); one that
        does not open (altered, truncated, an unknown key id) is the caller's 400, with what is wrong."""
        try:
            return await self._codec().decode(payloads)
        except UndecodablePayload as err:
            raise BadRequest(f"Cannot decode: {err}") from err

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """What the UI or CLI sends a workflow (a signal, a start) gets encrypted like the API's own."""
        return await self._codec().encode(payloads)

    def _codec(self) -> PayloadCodec:
        codec = self.temporal.data_converter.payload_codec
        if codec is None:
            raise Unavailable("This API's Temporal client encrypts nothing, so there is nothing to decode")
        return codec
