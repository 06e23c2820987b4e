"""`auth` unset, and the key store down before this replica has seen a key: it cannot tell "no keys
yet" from "keys exist elsewhere", so it fails closed (503) instead of serving an unknown or revoked
key anonymously (issue 16, 2). A tenant whose key this replica has seen is still served."""

from __future__ import annotations

import pytest

from margin.errors import AuthError, ServiceUnavailable
from margin.identity import KeyService, KeySpec
from margin.pipeline.auth import ANONYMOUS, Authenticator
from margin.pipeline.context import RequestContext
from margin.storage.memory import MemoryKeyStore
from margin.storage.protocols import KeyRecord, StorageError


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class FlakyStore(MemoryKeyStore):
    """Every read fails while `down`."""

    down = False

    async def find_key(self, secret_hash: str, now: float) -> KeyRecord | None:
        if self.down:
            raise StorageError("injected: the key store is unreachable")
        return await super().find_key(secret_hash, now)

    async def count_keys(self) -> int:
        if self.down:
            raise StorageError("injected: the key store is unreachable")
        return await super().count_keys()


def ctx(secret: str | None) -> RequestContext:
    return RequestContext(request_id="req_fail_closed", endpoint="chat", api_key=secret)


async def test_a_replica_that_never_saw_a_key_fails_closed_while_its_store_is_down() -> None:
    store, clock = FlakyStore(), Clock()
    elsewhere = KeyService(store, clock=clock)  # another replica: creates a key, then revokes it
    record, revoked = await elsewhere.create(KeySpec(team="search"))
    await elsewhere.revoke(record.key_id)
    _, valid = await elsewhere.create(KeySpec(team="ads"))
    here = Authenticator(KeyService(store, clock=clock))  # auth unset; this replica never saw a key
    store.down = True

    for secret in (revoked, "sk-margin-unknown", None):
        with pytest.raises(ServiceUnavailable) as refused:
            await here.authenticate(ctx(secret))
        assert refused.value.status == 503 and refused.value.headers == {"retry-after": "1"}
        assert (secret or "none") not in refused.value.message

    store.down = False  # the store is back: keys exist, so they are required and checked
    with pytest.raises(AuthError, match="revoked"):
        await here.authenticate(ctx(revoked))
    with pytest.raises(AuthError):
        await here.authenticate(ctx(None))
    assert (await here.authenticate(ctx(valid))).team == "ads"


async def test_a_tenant_this_replica_has_seen_is_served_through_the_outage() -> None:
    store, clock = FlakyStore(), Clock()
    service = KeyService(store, clock=clock, cache_s=1)
    _, valid = await service.create(KeySpec(team="ads"))
    auth = Authenticator(service)
    assert (await auth.authenticate(ctx(valid))).team == "ads"
    store.down = True
    clock.now += 60
    assert (await auth.authenticate(ctx(valid))).team == "ads"  # keys exist (sticky); its record is cached
    with pytest.raises(ServiceUnavailable):
        await auth.authenticate(ctx("sk-margin-unknown"))
    with pytest.raises(AuthError):
        await auth.authenticate(ctx(None))


async def test_with_no_key_anywhere_and_the_store_up_the_embedded_default_needs_none() -> None:
    store, clock = FlakyStore(), Clock()
    auth = Authenticator(KeyService(store, clock=clock, cache_s=5))
    assert await auth.authenticate(ctx(None)) == ANONYMOUS
    assert await auth.authenticate(ctx("sk-placeholder")) == ANONYMOUS
    store.down = True
    assert await auth.authenticate(ctx(None)) == ANONYMOUS  # the store's "no keys" is fresh for 5 s
    clock.now += 6
    with pytest.raises(ServiceUnavailable):
        await auth.authenticate(ctx("sk-placeholder"))
