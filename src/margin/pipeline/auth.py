"""Stage ①: who is asking. A virtual key (Authorization: Bearer, or x-api-key) becomes its Principal.

`auth` unset (the embedded default): no key is needed until the first key is created; from then on
a valid key is required. Before that, a presented key that is unknown is ignored (SDKs send
placeholders), but a known one is honoured: another replica may have created it moments ago, and
its budgets must apply here at once, not when this replica next re-checks whether keys exist.
`required`: always. `optional`: a missing key is the anonymous principal, a presented one must be
valid. Messages never repeat the key presented.

With `auth` unset, a replica that has never seen a key and whose key store does not answer (its
last "no keys" is older than the 5 s it is kept) cannot tell whether keys are required: it answers
503 (retry-after 1) rather than serve an unknown or revoked key as "no key needed yet".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from margin.errors import AuthError, ServiceUnavailable
from margin.identity.principals import for_purpose, principal_of
from margin.identity.service import KeyService
from margin.pipeline.context import RequestContext
from margin.pipeline.trace import stage
from margin.storage.protocols import StorageError
from margin.types import Principal

ANONYMOUS = Principal()
AuthMode = Literal["required", "optional"] | None


class Authenticator:
    def __init__(self, keys: KeyService | None = None, mode: AuthMode = None) -> None:
        self.keys = keys
        self.mode = mode
        self.place: Callable[[Principal], Principal] | None = None  # the team objects' members (docs/teams.md)

    @stage("auth")
    async def authenticate(self, ctx: RequestContext) -> Principal:
        """The key's principal, plus what the request declares it is for (`x-margin-purpose`)."""
        return for_purpose(await self.principal_for(ctx.api_key), ctx.purpose)

    async def _keys_exist(self, keys: KeyService) -> bool:
        try:
            return await keys.keys_exist()
        except StorageError:
            # Fail closed: not knowing whether keys exist, this replica cannot tell an unknown or
            # revoked key from an SDK's placeholder, nor whether a request needs a key at all.
            raise ServiceUnavailable(
                "The key store is unreachable, so this gateway cannot tell whether a key is needed.",
                headers={"retry-after": "1"},
            ) from None

    async def principal_for(self, secret: str | None) -> Principal:
        """Whose key `secret` is (None: no key presented), or the AuthError the request gets."""
        keys = self.keys
        if keys is None:
            return ANONYMOUS
        keyless = self.mode is None and not await self._keys_exist(keys)
        if not secret:
            if keyless or self.mode == "optional":
                return ANONYMOUS
            raise AuthError("This gateway needs an API key (Authorization: Bearer <key>).")
        try:
            record = await keys.lookup(secret)
        except StorageError:
            if keyless:
                return ANONYMOUS  # no key is needed yet; the store being down changes nothing
            raise ServiceUnavailable(
                "The key store is unreachable; the key could not be checked.", headers={"retry-after": "1"}
            ) from None
        if record is None:
            if keyless:
                return ANONYMOUS  # an SDK's placeholder key
            raise AuthError("The API key presented is not valid.")
        if record.revoked_at is not None:
            raise AuthError("The API key presented has been revoked.")
        principal = principal_of(record)
        return principal if self.place is None else self.place(principal)
