"""Part of the composition root (called by `create_app` only): builds stage ① and ② — the key store
and key service, the counters (Redis, the database, or memory), the limiter and its upkeep — from
the config, and starts and stops them with the app."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

from margin.budgets.admission import Limiter, Policy
from margin.budgets.alerts import AlertSink, webhook_sender
from margin.budgets.live import LiveObjects
from margin.budgets.object_service import ObjectService
from margin.budgets.objects import config_objects
from margin.budgets.reload import read_config_file, reload_objects
from margin.budgets.rules import RuleBook
from margin.budgets.upkeep import Upkeep
from margin.budgets.windows import Lease
from margin.config.environment import CONFIG_FILE
from margin.config.model import MarginConfig
from margin.errors import ConfigError, MarginError
from margin.identity.service import KeyService
from margin.ledger.journal import Journal
from margin.metering.pricebook import PriceBook
from margin.pipeline.auth import Authenticator
from margin.pipeline.durable import DurableIntents
from margin.pipeline.limits import Limits
from margin.pipeline.meter import Meter
from margin.storage import open_database_stores, open_redis_counters
from margin.storage.limits_stores import per_worker_counters
from margin.storage.memory import MemoryCounters
from margin.storage.protocols import Counters, KeyStore, LedgerStore, StorageError
from margin.storage.team_stores import open_object_store

log = logging.getLogger("margin")


@dataclass(slots=True)
class LimitsParts:
    key_store: KeyStore
    counters: Counters
    keys: KeyService
    limiter: Limiter
    upkeep: Upkeep
    stage: Limits
    auth: Authenticator
    uses_redis: bool
    objects: LiveObjects  # teams, budgets and rate limits, from the config and the database (live)
    config: MarginConfig  # as started: a reload says which other sections changed (restart needed)
    _reloads: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> None:
        await self.key_store.migrate()
        await self.counters.migrate()
        try:
            await self.keys.keys_exist()  # known before the first request: keys exist -> keys required
        except StorageError as exc:  # asked again by the first request (which fails closed meanwhile)
            log.warning("the key store did not say whether keys exist: %s", exc)
        await self.objects.start()  # before the first request: the stored budgets apply to it
        await self.upkeep.start()
        if CONFIG_FILE.read():  # SIGHUP: the config file's teams, budgets and rate limits, again
            with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):  # not the main thread
                asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._reload_soon)

    def _reload_soon(self) -> None:
        task = asyncio.ensure_future(self.reload())
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def reload(self) -> None:
        service = ObjectService(self.objects.store, lambda model, data: model.model_validate(data),
                                config=lambda: self.objects.config)  # fmt: skip
        try:
            path, new = read_config_file()
            done = await reload_objects(self.objects, service, self.config, path, new)
        except MarginError as exc:
            log.error("SIGHUP: %s", exc.message)
            return
        log.info("SIGHUP: reloaded %s (%d changes)", path, len(done.changes))

    async def stop(self) -> None:
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        await self.upkeep.stop()
        await self.objects.stop()
        for store in (self.counters, self.key_store):
            try:
                await store.close()
            except StorageError as exc:
                log.warning("closing a limits store failed: %s", exc)


def build_limits(
    config: MarginConfig,
    *,
    data_dir: Path,
    clock: Callable[[], float],
    meter: Meter,
    prices: PriceBook,
    ledger: LedgerStore | None,
    key_store: KeyStore | None = None,
    counters: Counters | None = None,
    journal: Journal | None = None,
) -> LimitsParts:
    settings = config.limits
    zone = ZoneInfo(settings.timezone)
    uses_redis = False
    if key_store is None or counters is None:
        db_keys, db_counters = open_database_stores(config.database.url, data_dir)
        key_store = key_store or db_keys
        if counters is None:
            counters, uses_redis = _counters(config, db_counters, clock)
    keys = KeyService(key_store, clock=clock, cache_s=settings.key_cache_s)
    policy = Policy(
        default_failure=settings.redis_failure,
        fail_open_share=settings.fail_open_share,
        budget_status=settings.on_budget_exceeded,
        priority=settings.priority,
    )
    lease = Lease(settings.lease_s or config.failover.deadline + 60.0)
    rules = RuleBook.from_config(config.budgets, config.rate_limits, zone)
    limiter = Limiter(rules, counters, lease=lease, policy=policy, clock=clock, fallback=MemoryCounters())
    if journal is not None:
        limiter.owner = journal.owner  # one id per process: its journal's and its intents' owner
    alerts_config = settings.alerts
    url = alerts_config.webhook_url.resolve() if alerts_config.webhook_url is not None else None
    sender = webhook_sender(url, timeout_s=alerts_config.webhook_timeout_s) if url else None
    upkeep = Upkeep(limiter, AlertSink(sender, retries=alerts_config.webhook_retries), ledger, key_store)
    stage = Limits(
        limiter,
        meter=meter,
        prices=prices,
        deployments={d.name: d for d in config.deployments},
        keys=keys,
        zone=zone,
        default_max_output_tokens=settings.default_max_output_tokens,
        durable=DurableIntents(journal, limiter),
    )
    declared = config_objects(config.teams, config.budgets, config.rate_limits)
    objects = LiveObjects(open_object_store(config.database.url, data_dir), limiter, zone, declared,
                          every_s=max(settings.key_cache_s, 0.5))  # fmt: skip
    auth = Authenticator(keys, config.auth)
    auth.place = objects.place
    stage.objects = objects
    return LimitsParts(key_store, counters, keys, limiter, upkeep, stage, auth, uses_redis, objects, config)


def _counters(config: MarginConfig, database: Counters, clock: Callable[[], float]) -> tuple[Counters, bool]:
    """The configured counters, and whether they are Redis."""
    choice = config.limits.counters
    refused = per_worker_counters(config)
    if refused:
        raise ConfigError(refused)
    if choice == "memory":
        return MemoryCounters(), False
    if choice == "redis" or (choice == "auto" and config.redis is not None):
        if config.redis is None:
            raise ConfigError("limits.counters is redis but there is no `redis:` section")
        url = config.redis.url.resolve()
        if not url:
            raise ConfigError("redis.url is empty (is its environment variable set?)")
        timeout_s = config.limits.redis_timeout_ms / 1000
        return open_redis_counters(url, prefix=config.redis.prefix, timeout_s=timeout_s, clock=clock), True
    return database, False
