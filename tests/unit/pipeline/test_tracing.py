"""The tracing seam (margin.pipeline.trace) and its OpenTelemetry side (margin.pipeline.otel): stages
timed only for traced requests, W3C parsing and sampling by the SDK, a bounded export queue whose
overflow is dropped and counted, never waited for; and `tracing:`'s config checks."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType

import pytest
from prometheus_client import CollectorRegistry

from margin.config import parse_config
from margin.errors import ConfigError
from margin.pipeline.context import RequestContext
from margin.pipeline.otel import OtelTracer
from margin.pipeline.record import RequestRecord
from margin.pipeline.trace import RequestTrace, stage
from margin.pipeline.tracing import NoTracer, build_tracer
from margin.types import Attempt

CONFIG = """
data_dir: {data}
tracing: {{enabled: true, endpoint: "{endpoint}", sample_ratio: {ratio}, max_queue_size: {queue},
           max_export_batch_size: 2, schedule_delay_ms: 600000, export_timeout_s: 1}}
deployments:
  - {{name: big, provider: openai_compat, model: big-1, base_url: "https://upstream.example:8443/v1"}}
models:
  - {{name: chat, deployments: [big]}}
"""


class Stages:
    @stage("sync")
    def sync(self, ctx: RequestContext, fail: bool = False) -> int:
        if fail:
            raise ValueError("no")
        return 1

    @stage("async")
    async def run(self, ctx: RequestContext) -> int:
        await asyncio.sleep(0.01)
        return 2


def test_stages_are_timed_only_for_a_traced_request() -> None:
    stages, ctx = Stages(), RequestContext(request_id="r", endpoint="chat")
    assert stages.sync(ctx) == 1 and asyncio.run(stages.run(ctx)) == 2  # untraced: nothing kept anywhere
    ctx.trace = RequestTrace(trace_id=1, span_id=2)
    assert stages.sync(ctx) == 1 and asyncio.run(stages.run(ctx)) == 2
    with pytest.raises(ValueError, match="no"):
        stages.sync(ctx, fail=True)
    [sync, timed, failed] = ctx.trace.stages
    assert (sync.name, sync.error, timed.name, failed.error) == ("sync", None, "async", "ValueError")
    assert timed.ended - timed.started >= 0.009 and sync.started <= sync.ended <= timed.started


def test_an_attempt_gets_a_traceparent_of_its_own_span() -> None:
    trace = RequestTrace(trace_id=0xABC, span_id=7, parent_id=5, tracestate="v=1")
    headers = trace.upstream_headers(0)
    version, trace_id, span_id, flags = headers["traceparent"].split("-")
    assert (version, int(trace_id, 16), flags, len(trace_id), len(span_id)) == ("00", 0xABC, "01", 32, 16)
    assert int(span_id, 16) == trace.attempt_ids[0] != 7 and headers["tracestate"] == "v=1"


def tracer(
    tmp_path: Path, *, endpoint: str = "http://127.0.0.1:9/v1/traces", ratio: float = 1.0, queue: int = 2048
) -> OtelTracer:
    config = parse_config(CONFIG.format(data=tmp_path, endpoint=endpoint, ratio=ratio, queue=queue))
    built = build_tracer(config, CollectorRegistry())
    assert isinstance(built, OtelTracer)
    return built


def test_the_client_traceparent_is_the_parent_and_sampling_follows_it(tmp_path: Path) -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    trace = tracer(tmp_path).start({"traceparent": parent, "tracestate": "congo=t61rcWkgMzE"})
    assert trace is not None and trace.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
    assert trace.parent_id == 0xB7AD6B7169203331 and trace.tracestate == "congo=t61rcWkgMzE"
    never = tracer(tmp_path, ratio=0)
    assert never.start({}) is None  # a new trace at ratio 0: not traced
    assert never.start({"traceparent": parent}) is not None  # the client sampled it: so does margin
    assert never.start({"traceparent": parent[:-2] + "00"}) is None  # the client did not
    fresh = tracer(tmp_path).start({"traceparent": "00-zz-not-a-traceparent"})
    assert fresh is not None and fresh.parent_id is None and fresh.trace_id != 0  # malformed: a trace of its own


def test_a_new_trace_is_sampled_at_the_configured_ratio(tmp_path: Path) -> None:
    """Without a client traceparent, `start` decides by the ratio sampler's own rule (the SDK's
    `TraceIdRatioBased`, which `ParentBased` asks for a root): the same share, the same trace ids."""
    from opentelemetry.sdk.trace.sampling import Decision, TraceIdRatioBased

    quarter = tracer(tmp_path, ratio=0.25)
    traces = [quarter.start({}) for _ in range(4000)]
    sampled = [t for t in traces if t is not None]
    assert 850 <= len(sampled) <= 1150  # 1000 expected; binomial sd 27
    sdk = TraceIdRatioBased(0.25)
    assert all(sdk.should_sample(None, t.trace_id, "request").decision is Decision.RECORD_AND_SAMPLE for t in sampled)
    assert all(t is not None and t.parent_id is None for t in (tracer(tmp_path).start({}) for _ in range(200)))


def test_tracing_off_builds_nothing(tmp_path: Path) -> None:
    config = parse_config(CONFIG.format(data=tmp_path, endpoint="http://x/v1/traces", ratio=1, queue=8))
    off = build_tracer(
        config.model_copy(update={"tracing": config.tracing.model_copy(update={"enabled": False})}), CollectorRegistry()
    )
    assert isinstance(off, NoTracer) and off.start({"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}) is None


@pytest.fixture
def silent_collector() -> Iterator[str]:
    """An OTLP endpoint that accepts connections and never answers: every export waits its timeout."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}/v1/traces"
    finally:
        server.close()


def traced_record(trace: RequestTrace) -> RequestRecord:
    ctx = RequestContext(request_id="req_1", endpoint="chat", trace=trace)
    now = time.perf_counter()
    ctx.attempts.append(Attempt(request_id="req_1", index=0, deployment="big", model="big-1", started_at=now))
    return RequestRecord(ctx=ctx, status="ok", usage=None, latency_s=0.01, ttft_s=None, overhead_s=0.001)


def test_a_full_export_queue_drops_and_counts_and_never_waits(tmp_path: Path, silent_collector: str) -> None:
    otel = tracer(tmp_path, endpoint=silent_collector, queue=4)
    otel.open()
    try:
        records = [traced_record(RequestTrace(trace_id=i + 1, span_id=i + 100)) for i in range(5)]
        started = time.perf_counter()
        otel.export(records)  # 3 spans each (request, attempt, record): 15, and room for 4
        assert time.perf_counter() - started < 0.05
        assert (otel.queued, otel.dropped) == (4, 11)
    finally:
        otel.close()
    assert otel.exporter is not None and otel.exporter.handed == 4 and otel.exporter.failed == 4


class _Blocked:
    def __init__(self, *names: str) -> None:
        self.names = names

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None) -> None:
        if fullname.split(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


def test_tracing_without_the_extra_is_a_config_error_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m.split(".")[0] == "opentelemetry"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_Blocked("opentelemetry"), *sys.meta_path])
    with pytest.raises(ConfigError) as caught:
        parse_config(CONFIG.format(data=tmp_path, endpoint="http://x/v1/traces", ratio=1, queue=8))
    assert "pip install 'margin[otel]'" in caught.value.message and "tracing" in caught.value.message
    assert parse_config(f"data_dir: {tmp_path}\n").tracing.enabled is False  # off: the extra is not needed


@pytest.mark.parametrize("bad", ["sample_ratio: 1.5", "endpoint: collector:4318", "max_queue_size: 1", "unknown: 1"])
def test_bad_tracing_settings_are_config_errors(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ConfigError):
        parse_config(f"data_dir: {tmp_path}\ntracing: {{enabled: false, {bad}}}\n")
