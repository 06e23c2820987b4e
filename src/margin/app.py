"""The composition root: the only place that builds and wires margin's parts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import disable_created_metrics
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware

from margin import errors
from margin.api.access import MetricsListenerGuard
from margin.api.batch_lines import PipelineLines
from margin.api.connections import CONNECTIONS_STATE_KEY, ConnectionGuard, ConnectionsCollector
from margin.api.dashboard_live import GatewayLive
from margin.api.errors import http_error_handler, margin_error_handler, unexpected_error_handler
from margin.api.routes import build_routes
from margin.api.runtime import RuntimeMonitor
from margin.api.state import GatewayState
from margin.api.timing import ResponseTiming
from margin.app_limits import LimitsParts, build_limits
from margin.autoscale.collector import AutoscaleCollector
from margin.autoscale.drains import DrainSync
from margin.autoscale.scraper import metrics_url_for
from margin.autoscale.service import Autoscaler
from margin.autoscale.standby import Standby
from margin.autoscale.standby_metrics import StandbyCollector
from margin.batch.tier import BatchTier, revocation_check
from margin.budgets.alerts import WebhookQueue, webhook_sender
from margin.budgets.sweeper import IntentSweeper
from margin.config.defaults import resolve_data_dir
from margin.config.model import MarginConfig
from margin.dashboard.planner_page import PlannerPage
from margin.dashboard.routes import Dashboard
from margin.dashboard.views import PageViews
from margin.ledger.collector import LedgerCollector
from margin.ledger.journal import Journal
from margin.ledger.spill import SpillFile
from margin.ledger.writer import LedgerWriter
from margin.metering.catalog import PriceCatalog, load_catalog
from margin.metering.pricebook import PriceBook
from margin.metering.unknown import UnknownPricePolicy
from margin.metrics import Metrics
from margin.pipeline.cache import CacheStage
from margin.pipeline.cache_metrics import CacheCollector
from margin.pipeline.call import Caller
from margin.pipeline.durable import DurableIntents
from margin.pipeline.error_labels import ErrorLabels
from margin.pipeline.handler import Pipeline
from margin.pipeline.ledger_rows import rows_for
from margin.pipeline.meter import Meter
from margin.pipeline.operator_gauges import OperatorGauges
from margin.pipeline.record import Recorder, RequestRecord
from margin.pipeline.recovery import Recovery
from margin.pipeline.refusal_rows import RefusalRows
from margin.pipeline.rollout_stage import RolloutStage
from margin.pipeline.route import ModelTable, Router
from margin.pipeline.self_completer import SelfCompleter
from margin.pipeline.tracing import build_tracer
from margin.providers.balance import Balancer
from margin.providers.base import Provider
from margin.providers.health_probes import HealthProbes
from margin.providers.local_metrics import LocalSlotsCollector
from margin.providers.malformed import MalformedEventsCollector
from margin.providers.metrics_page import MetricsPages
from margin.providers.registry import build_provider
from margin.resilience.circuit import CircuitStore, InMemoryCircuits
from margin.resilience.shared import SharedCircuits
from margin.resilience.state import Resilience
from margin.rollout.alerts import RolloutAlerts
from margin.rollout.drift import DriftWatch
from margin.rollout.engine import RolloutEngine
from margin.rollout.metrics import RolloutMetrics
from margin.rollout.sampling import ProductionSampler
from margin.rollout.service import RolloutService
from margin.storage import Counters, KeyStore, LedgerStore, open_ledger_store
from margin.storage.batch_stores import open_batch_store, open_blob_store
from margin.storage.limits_stores import open_redis_circuits
from margin.storage.rollout_stores import open_rollout_store
from margin.storage.rollouts import RolloutStore
from margin.storage.teams import ObjectStore
from margin.tuning.drift import DriftProposer

log = logging.getLogger("margin")


def create_app(
    config: MarginConfig,
    *,
    providers: Mapping[str, Provider] | None = None,
    ledger: LedgerStore | None = None,
    clock: Callable[[], float] = time.time,
    key_store: KeyStore | None = None,
    counters: Counters | None = None,
    rollout_store: RolloutStore | None = None,
) -> Starlette:
    """Build the gateway. `providers` replaces adapters by deployment name, `ledger`, `key_store` and
    `counters` the stores, `clock` the wall clock of budget windows (tests inject them); everything
    else is built from `config`."""
    built = {d.name: (providers or {}).get(d.name) or build_provider(d) for d in config.deployments}
    cost_ranks = {d.name: d.cost_rank for d in config.deployments}
    data_dir = resolve_data_dir(config)
    disable_created_metrics()  # type: ignore[no-untyped-call]  # no `*_created` series (process-wide)
    metrics = Metrics()
    store = ledger or open_ledger_store(config.database.url, data_dir)
    journal = Journal(data_dir / "journal") if config.metering.journal else None  # opened by the recovery
    writer = LedgerWriter(store, SpillFile(data_dir / "ledger-spill.jsonl"), journal=journal)
    metrics.registry.register(LedgerCollector(writer))
    prices = price_book(config)
    meter = Meter(built, prices, enabled=config.metering.enabled)
    limits = build_limits(
        config, data_dir=data_dir, clock=clock, meter=meter, prices=prices, ledger=store,
        key_store=key_store, counters=counters, journal=journal,
    )  # fmt: skip
    durable = limits.stage.durable
    refusals = RefusalRows(ErrorLabels())  # refused requests' rows, capped per key per second
    metrics.registry.register(refusals)
    recorder = Recorder(metrics, sinks=[ledger_sink(writer if config.metering.enabled else None, durable, refusals)])
    rollout_store = rollout_store or open_rollout_store(config.database.url, data_dir)
    recovery = Recovery(journal, writer, limits.limiter)
    sweeper = IntentSweeper(limits.limiter, recovery.swept)
    table = ModelTable(config)
    cache = (
        CacheStage.from_config(config.cache, data_dir=data_dir, redis=config.redis, prices=prices)
        if config.cache.enabled
        else None
    )
    caller = Caller(built, cost_ranks, Resilience.from_config(config, circuits=shared_circuits(config, data_dir)))
    caller.on_attempt = durable.attempt_started
    caller.standby = build_standby(config, caller, limits.objects.store)
    metrics.registry.register(StandbyCollector(caller.standby))  # cold/warming/drained/ready, wakes
    completer = SelfCompleter()  # drift re-evaluations ask margin itself, through the pipeline
    rollouts = build_rollouts(
        config, rollout_store, metrics, clock=clock, caller=caller, meter=meter, completer=completer
    )
    recorder.sinks.append(rollouts.sink)  # after the ledger's: each arm's signals
    tracer = build_tracer(config, metrics.registry)  # OpenTelemetry spans (or nothing) when recorded
    if tracer.enabled:
        recorder.sinks.append(tracer.export)
    pipeline = Pipeline(
        table=table,
        auth=limits.auth,
        caller=caller,
        meter=meter,
        recorder=recorder,
        limits=limits.stage,
        cache=cache,
        router=Router(table, config, data_dir, rollouts=rollouts),
    )
    rollouts.lifecycle = pipeline.lifecycle  # shadow calls end like any request: metered, recorded
    rollouts.judge.chat = pipeline.chat  # the online judge asks margin itself, as the rollout's experiment
    completer.chat = pipeline.chat
    metrics.registry.register(MalformedEventsCollector(built.values()))
    metrics.registry.register(LocalSlotsCollector(built.values()))  # slots, queue, stuck workers
    gauges = OperatorGauges(caller, limits.stage)  # circuits, in flight per deployment, team budgets
    metrics.registry.register(gauges)
    metrics.refreshers.append(gauges.refresh)
    connections = ConnectionGuard.from_config(config.server)  # enforced by `margin serve`'s protocol
    metrics.registry.register(ConnectionsCollector(connections))
    if pipeline.cache is not None:
        metrics.registry.register(CacheCollector(pipeline.cache))
    state = GatewayState(
        config=config,
        pipeline=pipeline,
        providers=built,
        metrics=metrics,
        ledger=store,
        admin_key=config.server.admin_key.resolve() if config.server.admin_key else None,
        max_body_bytes=config.server.max_body_bytes,
        probes=HealthProbes(built, interval_s=config.server.health_probe_interval_s),
        metrics_token=config.server.metrics_token.resolve() if config.server.metrics_token else None,
        metrics_port=config.server.metrics_port,
        batches=build_batches(config, data_dir, pipeline, clock),
        tracer=tracer,
        autoscale=build_autoscaler(config, metrics, caller),
    )
    dashboard = Dashboard(
        store, admin_key=state.admin_key, budgets=config.budgets, key_store=limits.key_store, clock=clock
    )
    planner = config.dashboard.planner
    dashboard_live = GatewayLive(
        limits.stage, caller, built.values(), pipeline.cache, limits.upkeep.alerts, autoscale=state.autoscale
    )
    runtime = RuntimeMonitor(config.server.runtime, metrics.registry)  # GC and event-loop lag, per worker
    lifespan = Lifespan(data_dir, store, limits, writer, state, recovery, sweeper, connections, rollouts, runtime)
    app = Starlette(
        routes=[
            *build_routes(),
            *dashboard.routes(),
            *PageViews(
                dashboard,
                dashboard_live,
                rollouts=rollout_store,
                batches=state.batches.store if state.batches else None,
                planner=PlannerPage.from_config(planner, price_catalog(config)) if planner else None,
            ).routes(),
        ],
        # Outermost of margin's own layers: times each request from its arrival to its last byte.
        middleware=[
            Middleware(ResponseTiming, expose_header=config.server.expose_overhead_header),
            *metrics_listener_guard(config),
        ],
        lifespan=lifespan,
        exception_handlers={
            errors.MarginError: margin_error_handler,
            HTTPException: http_error_handler,
            Exception: unexpected_error_handler,
        },
    )
    app.state.gateway = state
    return app


@dataclass(frozen=True, slots=True)
class Lifespan:
    """Start-up and shut-down order of the parts `create_app` built (no I/O before start-up)."""

    data_dir: Path
    store: LedgerStore
    limits: LimitsParts
    writer: LedgerWriter
    state: GatewayState
    recovery: Recovery  # replays dead replicas' journals, writes the rows of swept reservations
    sweeper: IntentSweeper  # settles dead replicas' reservations as spent
    connections: ConnectionGuard  # handed to the HTTP protocol through the lifespan state
    rollouts: RolloutStage  # split table, signals, decisions, shadow calls (docs/rollouts.md)
    runtime: RuntimeMonitor  # GC thresholds, the frozen start-up heap, GC pauses and loop lag on /metrics

    @contextlib.asynccontextmanager
    async def __call__(self, app: Starlette) -> AsyncIterator[dict[str, Any]]:
        pipeline, providers = self.state.pipeline, self.state.providers.values()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        await self.store.migrate()
        await self.limits.start()  # keys and counters (their migrations run after the ledger's)
        await self.rollouts.engine.service.store.migrate()
        await pipeline.router.start()  # learned routers' model files, read off the event loop
        await self.writer.start()
        await self.recovery.start()  # this replica's journal opens; dead ones' are replayed
        await self.sweeper.start()
        self.state.tracer.open()  # the span exporter's thread
        await pipeline.recorder.start()
        await self.rollouts.start()  # reads the live rollouts before the first request is served
        for provider in providers:
            await provider.start()
        if pipeline.caller.standby is not None:
            await pipeline.caller.standby.start()  # wake webhooks' queues (off the request path)
        if self.state.autoscale is not None:
            self.state.autoscale.start()  # scrapes model servers and computes signals, off the request path
        if self.state.batches is not None:
            await self.state.batches.start()  # in-progress batches resume, off the request path
        self.runtime.start()  # last: what start-up built is frozen out of the collector's walks
        try:
            yield {CONNECTIONS_STATE_KEY: self.connections}
        finally:
            await self.runtime.stop()
            if self.state.batches is not None:
                await self.state.batches.stop()  # lines in flight end (bounded), leases go back
            await pipeline.caller.aclose()  # streams still draining after their client left
            if pipeline.caller.standby is not None:
                await pipeline.caller.standby.stop()
            if self.state.autoscale is not None:
                await self.state.autoscale.stop()
            for provider in providers:
                await provider.aclose()
            await self.rollouts.stop()  # shadow calls end, the last signals are flushed
            await self.rollouts.engine.service.store.close()
            await self.sweeper.stop()
            await self.limits.stop()  # settles in flight reach the counters
            await pipeline.recorder.stop()  # drains records into the writer...
            await asyncio.to_thread(self.state.tracer.close)  # the last spans go (bounded by its timeout)
            await self.writer.stop()  # ...which drains rows into the store (or the spill file)
            await self.recovery.stop()  # the journal closes (deleted when nothing in it is needed)
            await self.store.close()
            await close_circuits(pipeline.caller.resilience.circuits)
            if pipeline.cache is not None:
                await pipeline.cache.close()


def build_standby(config: MarginConfig, caller: Caller, store: ObjectStore | None = None) -> Standby:
    """Cold (scale_to_zero:) and drained deployments; each wake webhook POSTs from its own bounded queue;
    drains shared through `store` (every replica, within limits.key_cache_s; margin.autoscale.drains)."""
    queues: dict[str, WebhookQueue] = {}
    for d in config.deployments:
        url = d.scale_to_zero.webhook_url if d.scale_to_zero is not None else None
        resolved = url.resolve() if url is not None else None
        if resolved:
            queues[d.name] = WebhookQueue(webhook_sender(resolved, timeout_s=5.0), name=f"wake-{d.name}")

    async def probe(name: str) -> bool:
        return await caller.providers[name].health()

    def wake(name: str, body: bytes) -> None:
        if name in queues:
            queues[name].offer(body, f"wake {name}")

    def in_rotation(name: str) -> bool:
        balancer: Balancer | None = getattr(caller.providers[name], "balancer", None)
        now = balancer.clock() if balancer is not None else 0.0
        return balancer is not None and any(e.out_until <= now for e in balancer.endpoints)

    configs = {d.name: d.scale_to_zero for d in config.deployments if d.scale_to_zero is not None}
    standby = Standby(configs, probe=probe, wake=wake, services=list(queues.values()), in_rotation=in_rotation,
                      names=[d.name for d in config.deployments])  # fmt: skip
    if store is not None:
        sync = DrainSync(store, standby, lambda name: getattr(caller.providers[name], "balancer", None),
                         every_s=max(config.limits.key_cache_s, 0.5))  # fmt: skip
        standby.sync = sync
        standby.services.append(sync)
    return standby


def build_autoscaler(config: MarginConfig, metrics: Metrics, caller: Caller) -> Autoscaler:
    """`autoscaling:`'s signals and desired replicas, served by /metrics, /autoscale and /admin/deployments."""
    pages = MetricsPages()
    replicas = {d.name: [metrics_url_for(base) for base in d.endpoints] for d in config.deployments if d.endpoints}
    autoscaler = Autoscaler(
        config.autoscaling, metrics, in_flight=caller.in_flight, unserved=caller.unserved,
        known={d.name for d in config.deployments}, fetch=pages.get, aclose=pages.aclose, default_urls=replicas,
        idle_after={d.name: d.scale_to_zero.idle_after_s for d in config.deployments if d.scale_to_zero is not None},
        idle_s=caller.standby.idle_s if caller.standby is not None else lambda name: None,
    )  # fmt: skip
    metrics.registry.register(AutoscaleCollector(autoscaler))
    for name in replicas.keys() & config.autoscaling.deployments.keys():  # scraped queues join the balancing
        balancer: Balancer | None = getattr(caller.providers[name], "balancer", None)
        if balancer is not None:
            queue = autoscaler.queue_of(name)
            balancer.extra_load = lambda endpoint, queue=queue: queue(endpoint.base)  # type: ignore[misc]
    return autoscaler


def build_batches(
    config: MarginConfig, data_dir: Path, pipeline: Pipeline, clock: Callable[[], float]
) -> BatchTier | None:
    """/v1/files and /v1/batches, whose lines enter `pipeline` as the live endpoints' requests do."""
    if not config.batch.enabled:
        return None
    store = open_batch_store(config.database.url, data_dir)  # no I/O until the lifespan starts it
    blobs = open_blob_store(config.batch.blob_dir, data_dir)
    in_flight = pipeline.caller.in_flight  # upstream calls open now: the back-off's load signal
    return BatchTier.build(
        config.batch, store, blobs, PipelineLines(pipeline), clock=clock, load=lambda: sum(in_flight.values()),
        key_revoked=revocation_check(pipeline.auth.keys),
    )  # fmt: skip


def metrics_listener_guard(config: MarginConfig) -> list[Middleware]:
    """With a separate metrics listener, that port answers /metrics and /healthz only (no layer,
    and no cost per request, without one)."""
    port = config.server.metrics_port
    return [] if port is None else [Middleware(MetricsListenerGuard, metrics_port=port)]


def build_rollouts(
    config: MarginConfig, store: RolloutStore, metrics: Metrics, *, clock: Callable[[], float], caller: Caller,
    meter: Meter, completer: SelfCompleter,
) -> RolloutStage:  # fmt: skip
    settings = config.rollouts
    webhook = settings.alert_webhook
    sender = webhook_sender(webhook, timeout_s=settings.alert_timeout_s) if webhook else None
    alerts = RolloutAlerts(sender)
    service = RolloutService(store, config, clock=clock, alerts=alerts, metrics=RolloutMetrics(metrics.registry))
    groups = {g.name: tuple(g.deployments) for g in config.models}
    engine = RolloutEngine(service, settings, group_deployments=groups, clock=clock)
    samples = {g.name: g.sample for g in config.models if g.sample is not None}
    sampler = ProductionSampler(store, samples, clock=clock) if samples else None
    stable = {g.name: g.deployments[0] for g in config.models}
    watched = {name: s for name, s in samples.items() if s.reeval_every_s is not None}
    judges = {g.name: g.rollout.judge for g in config.models if g.rollout is not None}  # the drift judge's base
    trigger = config.tuning.sources and config.tuning.drift.action != "off"  # a drift proposes a tuning job
    proposer = DriftProposer(config, resolve_data_dir(config)) if trigger else None
    drift = (
        DriftWatch(store, watched, stable, completer, alerts, clock=clock, judges=judges, on_drift=proposer)
        if watched
        else None
    )
    return RolloutStage(engine, settings, caller=caller, meter=meter, sampler=sampler, drift=drift)


def price_book(config: MarginConfig) -> PriceBook:
    return PriceBook(config.deployments, price_catalog(config), UnknownPricePolicy(config.metering.unknown_price))


def price_catalog(config: MarginConfig) -> PriceCatalog:
    metering = config.metering
    catalog_file = Path(metering.catalog_file) if metering.catalog_file else resolve_data_dir(config) / "prices.yaml"
    return load_catalog(user_file=catalog_file, overrides=metering.prices)


def ledger_sink(
    writer: LedgerWriter | None, durable: DurableIntents, refusals: RefusalRows
) -> Callable[[list[RequestRecord]], None]:
    """Recorded requests become ledger rows (none when metering is off), a request that margin's
    own limits refused its one `refused` row; runs in the recorder's background task. The journal
    then knows the request needs nothing more from it."""

    def sink(batch: list[RequestRecord]) -> None:
        for record in batch:
            if writer is not None:
                rows = rows_for(record.ctx, overhead_ms=record.overhead_s * 1000)
                refused = None if rows else refusals.row_of(record)
                writer.submit(rows if refused is None else [refused])
            durable.ended(record.ctx.request_id)

    return sink


def shared_circuits(config: MarginConfig, data_dir: Path) -> CircuitStore | None:
    """With `redis:` configured, every replica sees one circuit state per deployment; without it,
    the worker processes of `margin serve --workers N` (N > 1) share theirs in `{data_dir}/circuits.db`
    (docs/workers.md). One process alone keeps its circuits in memory."""
    fresh_s = config.failover.shared_circuit_fresh_ms / 1000
    url = config.redis.url.resolve() if config.redis is not None else None
    if config.redis is None or not url:
        if config.server.workers == 1:
            return None
        from margin.storage.sqlite.circuits import SqliteCircuitScripts

        return SharedCircuits(SqliteCircuitScripts(data_dir / "circuits.db"), InMemoryCircuits(), allow_fresh_s=fresh_s)
    timeout_s = config.limits.redis_timeout_ms / 1000
    remote = open_redis_circuits(url, prefix=config.redis.prefix, timeout_s=timeout_s)
    return SharedCircuits(remote, InMemoryCircuits(), allow_fresh_s=fresh_s)


async def close_circuits(circuits: CircuitStore) -> None:
    if isinstance(circuits, SharedCircuits):
        close = getattr(circuits.remote, "close", None)
        if close is not None:
            await close()
