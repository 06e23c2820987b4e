"""The key service: create, rotate, revoke and list keys, and resolve a presented secret to its
record on the request path.

Lookups are cached per replica for `cache_s` seconds (positive and negative), so a request costs a
dict lookup, not a database round trip. A revocation or rotation made on this replica applies here
at once; other replicas see it within `cache_s`. When the store is unreachable a cached answer is
served past its age (the key was valid moments ago) and an uncached secret is refused."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import ValidationError

from margin.identity.key_spec import KeyPolicy, KeySpec
from margin.identity.keys import hash_secret, new_key_id, new_secret, public_prefix
from margin.storage.protocols import KeyRecord, KeyStore, StorageError

_MAX_CACHED = 100_000


@dataclass(slots=True)
class _Cached:
    record: KeyRecord | None
    fetched_at: float


class KeyService:
    def __init__(self, store: KeyStore, *, clock: Callable[[], float] = time.time, cache_s: float = 5.0) -> None:
        self.store = store
        self.clock = clock
        self.cache_s = cache_s
        self._by_hash: dict[str, _Cached] = {}
        self._policies: dict[str, KeyPolicy | None] = {}
        self._exist: bool = False  # sticky: once a key has existed, keys are required (auth unset)
        self._exist_checked_at = float("-inf")

    # --- admin operations -------------------------------------------------------------------------

    async def create(self, spec: KeySpec) -> tuple[KeyRecord, str]:
        secret = new_secret()
        record = KeyRecord(
            key_id=new_key_id(),
            secret_hash=hash_secret(secret),
            prefix=public_prefix(secret),
            name=spec.name,
            org=spec.org,
            team=spec.team,
            user=spec.user,
            tags=tuple(spec.tags),
            endpoint_class=spec.endpoint_class,
            allowed_models=tuple(spec.allowed_models),
            allowed_tiers=tuple(spec.allowed_cost_ranks),  # the store's column keeps its name
            policy=spec.policy().model_dump(mode="json", exclude_none=True),
            created_at=self.clock(),
        )
        await self.store.insert_key(record)
        self._exist = True
        return record, secret

    async def rotate(self, key_id: str, *, grace_s: float = 0.0) -> tuple[KeyRecord, str] | None:
        secret = new_secret()
        record = await self.store.rotate_key(
            key_id, secret_hash=hash_secret(secret), prefix=public_prefix(secret), now=self.clock(), grace_s=grace_s
        )
        if record is not None:
            self._forget(key_id)
        return None if record is None else (record, secret)

    async def revoke(self, key_id: str) -> KeyRecord | None:
        record = await self.store.revoke_key(key_id, self.clock())
        self._forget(key_id)
        return record

    async def list(self) -> list[KeyRecord]:
        return await self.store.list_keys()

    def _forget(self, key_id: str) -> None:
        for digest in [h for h, c in self._by_hash.items() if c.record is not None and c.record.key_id == key_id]:
            del self._by_hash[digest]
        self._policies.pop(key_id, None)

    # --- the request path -------------------------------------------------------------------------

    async def keys_exist(self) -> bool:
        """Does any key exist (for `auth` unset: are keys required)? Once one has, always. The
        store's "no" is kept for `cache_s`; past that, a store that does not answer raises
        StorageError: this replica cannot tell, and the caller fails closed (a key created on
        another replica, or revoked there, must not be served as "no key needed yet")."""
        if self._exist:
            return True
        now = self.clock()
        if now - self._exist_checked_at >= self.cache_s:
            self._exist = await self.store.count_keys() > 0  # StorageError: unknown, asked again next time
            self._exist_checked_at = now
        return self._exist

    async def lookup(self, secret: str) -> KeyRecord | None:
        """The record for a presented secret (revoked ones included), or None when unknown.
        Raises StorageError only when the store is down and nothing is cached."""
        digest = hash_secret(secret)
        now = self.clock()
        cached = self._by_hash.get(digest)
        if cached is not None and now - cached.fetched_at < self.cache_s:
            return cached.record
        try:
            record = await self.store.find_key(digest, now)
        except StorageError:
            if cached is not None:
                return cached.record
            raise
        if len(self._by_hash) >= _MAX_CACHED:
            self._by_hash.clear()  # bounded: guessing secrets must not grow memory without end
        self._by_hash[digest] = _Cached(record, now)
        if record is not None:
            self._exist = True
            self._policies[record.key_id] = policy_of_record(record)
        return record

    def policy_of(self, key_id: str) -> KeyPolicy | None:
        """The key's own limits, as last looked up on this replica (None: none)."""
        return self._policies.get(key_id)


def policy_of_record(record: KeyRecord) -> KeyPolicy | None:
    if not record.policy:
        return None
    try:
        policy = KeyPolicy.model_validate(dict(record.policy))
    except ValidationError as exc:
        # Limits this replica cannot read must not silently become "no limits": refuse the key.
        raise StorageError(f"key {record.key_id}: unreadable limits ({exc.error_count()} errors)") from None
    return None if policy.empty else policy
