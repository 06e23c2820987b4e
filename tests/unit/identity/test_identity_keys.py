"""Key material and the key service: hashed storage, prefix-only display, rotation with grace,
revocation, the per-replica cache, and the embedded default's "keys once the first exists"."""

from __future__ import annotations

import pytest

from margin.identity import KeyService, KeySpec, hash_secret, new_secret, public_prefix
from margin.identity.key_spec import KeyPolicy
from margin.storage.memory import MemoryKeyStore
from margin.storage.protocols import KeyRecord, StorageError


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class DownStore(MemoryKeyStore):
    down = False

    async def find_key(self, secret_hash: str, now: float) -> KeyRecord | None:
        if self.down:
            raise StorageError("down")
        return await super().find_key(secret_hash, now)


def test_secrets_are_random_hashed_and_shown_by_prefix_only() -> None:
    one, two = new_secret(), new_secret()
    assert one != two and one.startswith("sk-margin-") and len(one) == len("sk-margin-") + 43
    assert hash_secret(one) == hash_secret(one) != hash_secret(two)
    assert len(hash_secret(one)) == 64 and one not in hash_secret(one)
    assert public_prefix(one) == one[:16] + "..."


async def test_create_stores_only_the_hash_and_lookup_finds_the_key() -> None:
    store = MemoryKeyStore()
    service = KeyService(store, clock=Clock())
    record, secret = await service.create(KeySpec(team="search", tags=["env:prod"], budget={"limit_usd": "5"}))
    stored = await store.get_key(record.key_id)
    assert stored is not None and stored.secret_hash == hash_secret(secret)
    assert secret not in repr(stored)
    found = await service.lookup(secret)
    assert found is not None and found.team == "search" and found.tags == ("env:prod",)
    assert await service.lookup(new_secret()) is None
    policy = service.policy_of(record.key_id)
    assert isinstance(policy, KeyPolicy) and policy.budget is not None


async def test_rotation_keeps_the_id_and_honours_the_grace_period() -> None:
    clock = Clock()
    service = KeyService(MemoryKeyStore(), clock=clock, cache_s=0)
    record, old = await service.create(KeySpec())
    rotated = await service.rotate(record.key_id, grace_s=60)
    assert rotated is not None
    new_record, new = rotated
    assert new_record.key_id == record.key_id and new != old
    assert (await service.lookup(old)) is not None  # within the grace period
    clock.now += 61
    assert await service.lookup(old) is None
    assert await service.lookup(new) is not None
    assert await service.rotate("key_unknown") is None


async def test_revocation_applies_here_at_once_and_elsewhere_within_the_cache_age() -> None:
    clock = Clock()
    store = MemoryKeyStore()
    here, elsewhere = KeyService(store, clock=clock, cache_s=5), KeyService(store, clock=clock, cache_s=5)
    record, secret = await here.create(KeySpec())
    assert await elsewhere.lookup(secret) is not None
    await here.revoke(record.key_id)
    revoked = await here.lookup(secret)
    assert revoked is not None and revoked.revoked_at is not None
    cached = await elsewhere.lookup(secret)
    assert cached is not None and cached.revoked_at is None  # the other replica's cache, for now
    clock.now += 5
    again = await elsewhere.lookup(secret)
    assert again is not None and again.revoked_at is not None


async def test_keys_exist_once_one_was_created_and_stays_so() -> None:
    store = MemoryKeyStore()
    service = KeyService(store, clock=Clock())
    assert not await service.keys_exist()
    record, _ = await service.create(KeySpec())
    await service.revoke(record.key_id)
    assert await service.keys_exist()


async def test_a_store_outage_serves_cached_keys_and_refuses_unknown_ones() -> None:
    clock = Clock()
    store = DownStore()
    service = KeyService(store, clock=clock, cache_s=1)
    _, secret = await service.create(KeySpec())
    assert await service.lookup(secret) is not None
    store.down = True
    clock.now += 10
    assert await service.lookup(secret) is not None  # stale, but the key was valid a moment ago
    with pytest.raises(StorageError):
        await service.lookup(new_secret())


async def test_unreadable_limits_refuse_the_key_instead_of_dropping_its_budget() -> None:
    store = MemoryKeyStore()
    service = KeyService(store, clock=Clock())
    record, secret = await service.create(KeySpec())
    await store.insert_key(
        KeyRecord(
            key_id="key_future", secret_hash=hash_secret("sk-margin-future"), prefix="x", name="", org="o",
            team="t", user="u", policy={"budget": {"limit_usd": "1", "unknown_field": 1}},
        )
    )  # fmt: skip
    with pytest.raises(StorageError):
        await service.lookup("sk-margin-future")
    assert await service.lookup(secret) == record


async def test_keyless_mode_honours_a_key_another_replica_just_created() -> None:
    from margin.errors import AuthError
    from margin.pipeline.auth import ANONYMOUS, Authenticator
    from margin.pipeline.context import RequestContext

    store, clock = MemoryKeyStore(), Clock()
    here, elsewhere = KeyService(store, clock=clock), KeyService(store, clock=clock)
    auth = Authenticator(here)

    def ctx(secret: str | None) -> RequestContext:
        return RequestContext(request_id="req_auth", endpoint="chat", api_key=secret)

    assert await auth.authenticate(ctx("sk-placeholder")) == ANONYMOUS  # keyless: placeholders pass
    record, secret = await elsewhere.create(KeySpec(team="search"))
    assert not await here.keys_exist()  # this replica has not re-checked yet (cached for 5 s)...
    principal = await auth.authenticate(ctx(secret))
    assert principal.key_id == record.key_id and principal.team == "search"  # ...but the key counts at once
    await elsewhere.revoke(record.key_id)
    clock.now += 10
    with pytest.raises(AuthError, match="revoked"):
        await auth.authenticate(ctx(secret))
