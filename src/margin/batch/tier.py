"""The batch tier's parts, built by the composition root from the stores it opened: the file and
batch services the HTTP layer calls, and the worker the lifespan starts and stops."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from margin.batch.anthropic import MessageBatches
from margin.batch.backoff import Tier, TierSignals
from margin.batch.files import FileService
from margin.batch.finalize import Finalizer
from margin.batch.native_run import NativeBackend, NativeRunner
from margin.batch.retry import Retries
from margin.batch.runner import LineExecutor, LineRunner
from margin.batch.service import BatchService
from margin.batch.validate import Validator
from margin.batch.worker import BatchWorker
from margin.config.batch import BatchConfig
from margin.identity.service import KeyService
from margin.storage.batches import BatchStore
from margin.storage.blobs import BlobStore


@dataclass(frozen=True, slots=True)
class BatchTier:
    settings: BatchConfig
    store: BatchStore
    blobs: BlobStore
    files: FileService
    batches: BatchService
    messages: MessageBatches  # Anthropic's shapes on the same engine
    retries: Retries  # POST /v1/batches/{id}/retry_failed
    worker: BatchWorker

    @classmethod
    def build(
        cls, settings: BatchConfig, store: BatchStore, blobs: BlobStore, executor: LineExecutor,
        *, clock: Callable[[], float], owner: str | None = None, load: Callable[[], int] | None = None,
        key_revoked: Callable[[str], Awaitable[bool]] | None = None,
        tier_load: Callable[[Tier], int] | None = None, tier_of: Callable[[dict[str, Any]], Tier] | None = None,
    ) -> BatchTier:  # fmt: skip
        files = FileService(store, blobs, settings, clock)
        if isinstance(executor, TierSignals):  # the pipeline's executor: a back-off per tier
            tier_load, tier_of = tier_load or executor.tier_load, tier_of or executor.tier_of
        native = None
        if settings.native_deployments and isinstance(executor, NativeBackend):
            native = NativeRunner(store, blobs, executor, settings, clock)
        worker = BatchWorker(
            store, blobs, LineRunner(executor, settings, clock), Validator(store, blobs, executor, settings),
            Finalizer(store, blobs, clock), settings, clock=clock, owner=owner, load=load, key_revoked=key_revoked,
            tier_load=tier_load, tier_of=tier_of, native=native,
        )  # fmt: skip
        batches = BatchService(store, files, settings, clock, worker)
        messages = MessageBatches(batches, files, executor, settings)
        retries = Retries(store, files, batches, clock)
        return cls(settings, store, blobs, files, batches, messages, retries, worker)

    async def start(self) -> None:
        await self.store.migrate()
        await self.worker.start()  # batches left in progress by a previous run resume here

    async def stop(self) -> None:
        await self.worker.stop(grace_s=min(10.0, self.settings.lease_s))
        if self.worker.native is not None:
            for api in self.worker.native.apis.values():
                await api.aclose()
        await self.store.close()


def revocation_check(keys: KeyService | None) -> Callable[[str], Awaitable[bool]] | None:
    """Whether a batch creator's key has been revoked, from the key store (None: no key store)."""
    if keys is None:
        return None
    store = keys.store

    async def revoked(key_id: str) -> bool:
        record = await store.get_key(key_id)  # a store failure stops the chunk; it is tried again
        return record is not None and record.revoked_at is not None

    return revoked
