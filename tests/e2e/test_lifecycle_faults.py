"""Every request ends exactly once, whatever breaks, on every endpoint.

A real gateway (create_app, served by uvicorn on loopback in this process so that its counters and
ledger can be inspected) is driven by the official openai and anthropic SDKs. For each endpoint a
failure is injected at each stage of the request: before the upstream (a bad key, a spent budget,
an unknown model), at the upstream (it fails; a stream breaks after content went out), at the
client (it hangs up mid-answer; or, for a stream, leaves while margin drains the upstream), and at
the ledger (its database is down). After each request, and again after shutdown:

- no reservation is left held in the counters store, and no upstream attempt is left open;
- the request ended exactly once (one record per request id);
- the ledger, or its spill file while the database is down, holds exactly one row per upstream
  attempt (a cache hit's one row), none missing and none twice.

A new endpoint is one line in ENDPOINTS; a new stage one line in STAGES.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from starlette.routing import Route

from margin import errors
from margin.api.routes import build_routes
from margin.app import create_app
from margin.config import parse_config
from margin.config.model import DeploymentConfig
from margin.identity.key_spec import KeySpec
from margin.pipeline.handler import Pipeline
from margin.pipeline.record import RequestRecord
from margin.providers.fake.adapter import FakeProvider
from margin.storage.ledger_row import LedgerRow
from margin.storage.protocols import StorageError
from margin.storage.sqlite import SqliteLedgerStore
from margin.types import ChatRequest, Chunk, EmbeddingRequest, EmbeddingResult
from tests.support.counters import HoldTracker
from tests.support.loopback import serving

ADMIN = "lifecycle-admin-key"
WORDS = " ".join(f"w{i}" for i in range(60))  # a 60-word answer in 40 chunks, 10 ms apart
LONG = " ".join(f"long{i}" for i in range(6_000))  # a cached answer replayed in about 500 events
SLOW_UPSTREAM_S = 0.6
CLIENT_GIVES_UP_S = 0.2

CONFIG = """
deployments:
  - name: primary
    provider: fake
    model: big
    price: {input: "1", output: "2"}
    fake: {chunks: 40, chunk_delay_ms: 10}
    retry: {base_delay: 0.01, max_delay: 0.02}
  - name: backup
    provider: fake
    model: small
    price: {input: "1", output: "2"}
    fake: {chunks: 40, chunk_delay_ms: 10}
    retry: {base_delay: 0.01, max_delay: 0.02}
  - {name: embed, provider: fake, model: emb, capabilities: {embeddings: true}, price: {input: "1", output: "0"}}
models:
  - {name: chat, deployments: [primary, backup]}
  - {name: embeddings, deployments: [embed]}
cache: {enabled: true, backend: memory}
budgets: [{scope: global, limit_usd: "1000"}]
rate_limits: [{scope: global, concurrency: 8, tokens_per_minute: 100000000}]
"""


# --- what the gateway is built with -----------------------------------------------------------------


class FaultyProvider(FakeProvider):
    """The shipped fake, with a switchable fault: "fail" before answering (an upstream error),
    "bug" before answering (an adapter bug: not a MarginError), "break" a stream after its third
    chunk, "slow" to answer."""

    def __init__(self, deployment: DeploymentConfig) -> None:
        super().__init__(deployment)
        self.fault: str | None = None

    async def _before(self) -> None:
        if self.fault == "fail":
            self.calls += 1
            raise errors.UpstreamServerError("injected upstream failure", deployment=self.deployment.name)
        if self.fault == "bug":
            self.calls += 1
            raise ValueError("injected: a bug in the adapter")
        if self.fault == "slow":
            await asyncio.sleep(SLOW_UPSTREAM_S)

    async def chat(self, request: ChatRequest) -> Any:
        await self._before()
        return await super().chat(request)

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResult:
        await self._before()
        return await super().embed(request)

    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        await self._before()
        sent = 0
        async for chunk in super().stream(request):
            if self.fault == "break" and sent == 3:
                raise errors.UpstreamConnection(
                    "injected: connection reset mid-stream", deployment=self.deployment.name
                )
            yield chunk
            sent += 1


class FlakyLedger:
    """The real SQLite ledger store, whose database can be taken down (writes fail, health fails)."""

    def __init__(self, store: SqliteLedgerStore) -> None:
        self.store = store
        self.down = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def write(self, rows: Sequence[LedgerRow]) -> None:
        if self.down:
            raise StorageError("injected: the ledger database is unreachable")
        await self.store.write(rows)

    async def health(self) -> bool:
        return not self.down and await self.store.health()


@dataclass
class Gateway:
    url: str
    data_dir: Path
    pipeline: Pipeline
    providers: dict[str, FaultyProvider]
    counters: HoldTracker
    ledger: FlakyLedger
    records: list[RequestRecord]
    keys: dict[str, str]
    _openai: openai.AsyncOpenAI | None = None
    _anthropic: anthropic.AsyncAnthropic | None = None

    def openai(self, ask: Ask) -> openai.AsyncOpenAI:
        """One SDK client per gateway (building one loads the TLS trust store: 50 ms), per-call options."""
        if self._openai is None:
            self._openai = openai.AsyncOpenAI(base_url=f"{self.url}/v1", api_key="unset", max_retries=0)
        return self._openai.with_options(api_key=ask.key)

    def anthropic(self, ask: Ask) -> anthropic.AsyncAnthropic:
        if self._anthropic is None:
            self._anthropic = anthropic.AsyncAnthropic(base_url=self.url, api_key="unset", max_retries=0)
        return self._anthropic.with_options(api_key=ask.key)

    async def close_clients(self) -> None:
        for client in (self._openai, self._anthropic):
            if client is not None:
                await client.close()

    def fault(self, kind: str | None) -> None:
        for provider in self.providers.values():
            provider.fault = kind

    def upstream_calls(self) -> int:
        return sum(p.calls for p in self.providers.values())

    async def ended(self, requests: int, timeout_s: float = 10.0) -> None:
        """Wait until `requests` requests have been recorded and their settles applied."""
        async with asyncio.timeout(timeout_s):
            while len(self.records) < requests:
                await asyncio.sleep(0.01)
        limiter = self.pipeline.limits.limiter
        assert limiter is not None
        await limiter.drain()


@asynccontextmanager
async def gateway(tmp_path: Path, *, on_disconnect: str = "cancel") -> AsyncIterator[Gateway]:
    data_dir = tmp_path / "data"
    settings = f"data_dir: {data_dir}\nserver: {{admin_key: {ADMIN}}}\nfailover: {{on_disconnect: {on_disconnect}}}\n"
    config = parse_config(CONFIG + settings)
    providers = {d.name: FaultyProvider(d) for d in config.deployments}
    counters = HoldTracker()
    ledger = FlakyLedger(SqliteLedgerStore(data_dir / "ledger.db"))
    app = create_app(config, providers=providers, counters=counters, ledger=ledger)  # type: ignore[arg-type]
    pipeline: Pipeline = app.state.gateway.pipeline
    records: list[RequestRecord] = []
    pipeline.recorder.sinks.append(records.extend)
    async with serving(app) as url:
        poor = await create_key(pipeline, {"budget": {"limit_usd": 0}})  # refused before any upstream call
        keys = {"good": await create_key(pipeline, {}), "poor": poor}
        gw = Gateway(url, data_dir, pipeline, providers, counters, ledger, records, keys)
        try:
            yield gw
        finally:
            await gw.close_clients()


async def create_key(pipeline: Pipeline, spec: dict[str, Any]) -> str:
    """What `POST /admin/keys` does (the admin API is tested elsewhere; here it would only cost time)."""
    assert pipeline.limits.keys is not None
    _, secret = await pipeline.limits.keys.create(KeySpec.model_validate(spec))
    return secret


# --- the endpoints, each called the way a client would, through its SDK -------------------------------


@dataclass(frozen=True)
class Ask:
    key: str
    model: str
    text: str = WORDS
    cacheable: bool = False  # temperature 0: the exact cache keeps and serves it
    leave_after: int | None = None  # stream events read before the client hangs up
    gives_up_after_s: float | None = None  # the client abandons the call (and its connection) after this

    @property
    def sampling(self) -> dict[str, Any]:
        return {"temperature": 0} if self.cacheable else {}


async def read_events(stream: Any, ask: Ask) -> str:
    """Read a stream to its end, or hang up after `ask.leave_after` events."""
    seen = 0
    async for _ in stream:
        seen += 1
        if ask.leave_after is not None and seen >= ask.leave_after:
            await stream.close()  # closes the response and its connection: the client is gone
            return "left"
    return "ok"


def turns(ask: Ask) -> Any:
    return [{"role": "user", "content": ask.text}]


async def chat(gw: Gateway, ask: Ask) -> str:
    await gw.openai(ask).chat.completions.create(model=ask.model, messages=turns(ask), **ask.sampling)
    return "ok"


async def chat_stream(gw: Gateway, ask: Ask) -> str:
    create = gw.openai(ask).chat.completions.create
    return await read_events(await create(model=ask.model, messages=turns(ask), stream=True, **ask.sampling), ask)


async def completions(gw: Gateway, ask: Ask) -> str:
    await gw.openai(ask).completions.create(model=ask.model, prompt=ask.text, **ask.sampling)
    return "ok"


async def completions_stream(gw: Gateway, ask: Ask) -> str:
    create = gw.openai(ask).completions.create
    return await read_events(await create(model=ask.model, prompt=ask.text, stream=True, **ask.sampling), ask)


async def embeddings(gw: Gateway, ask: Ask) -> str:
    await gw.openai(ask).embeddings.create(model=ask.model, input=ask.text)
    return "ok"


async def messages(gw: Gateway, ask: Ask) -> str:
    create = gw.anthropic(ask).messages.create
    await create(model=ask.model, max_tokens=20_000, messages=turns(ask), extra_body=ask.sampling)
    return "ok"


async def messages_stream(gw: Gateway, ask: Ask) -> str:
    create = gw.anthropic(ask).messages.create
    stream = await create(model=ask.model, max_tokens=20_000, messages=turns(ask), stream=True, extra_body=ask.sampling)
    return await read_events(stream, ask)


Send = Callable[[Gateway, Ask], Awaitable[str]]


@dataclass(frozen=True)
class Endpoint:
    name: str
    send: Send
    path: str  # the route it serves (every model-serving route must be covered: see the last test)
    streams: bool = False
    model: str = "chat"
    warm: Send | None = None  # a cache endpoint: this call fills the cache, then `send` is served from it

    @property
    def cached(self) -> bool:
        return self.warm is not None


ENDPOINTS = [
    Endpoint("chat", chat, "/v1/chat/completions"),
    Endpoint("chat-stream", chat_stream, "/v1/chat/completions", streams=True),
    Endpoint("completions", completions, "/v1/completions"),
    Endpoint("completions-stream", completions_stream, "/v1/completions", streams=True),
    Endpoint("embeddings", embeddings, "/v1/embeddings", model="embeddings"),
    Endpoint("messages", messages, "/v1/messages"),
    Endpoint("messages-stream", messages_stream, "/v1/messages", streams=True),
    Endpoint("chat-cache-hit", chat, "/v1/chat/completions", warm=chat),
    Endpoint("chat-cache-replay", chat_stream, "/v1/chat/completions", streams=True, warm=chat),
    Endpoint("messages-cache-hit", messages, "/v1/messages", warm=messages),
    Endpoint("messages-cache-replay", messages_stream, "/v1/messages", streams=True, warm=messages),
]


# --- the stages where a failure is injected -------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    name: str
    client_sees: Callable[[Endpoint], str]  # "ok", "left", "in-band error" or "http <status>" ("|": either)
    ends_as: Callable[[Endpoint], str]  # the request's recorded status: "ok", "cancelled", "error", "ok|cancelled"
    arm: Callable[[Gateway, Ask], Ask] = lambda gw, ask: ask  # inject the failure; returns the request to send
    streams_only: bool = False
    on_disconnect: str = "cancel"
    reaches_limits: bool = True  # the request gets as far as reserving


def _fault(kind: str) -> Callable[[Gateway, Ask], Ask]:
    def arm(gw: Gateway, ask: Ask) -> Ask:
        gw.fault(kind)
        return ask

    return arm


def _ledger_down(gw: Gateway, ask: Ask) -> Ask:
    gw.ledger.down = True
    return ask


def _client_gives_up(gw: Gateway, ask: Ask) -> Ask:
    gw.fault("slow")  # the answer (a stream's first chunk) takes longer than the client waits
    return replace(ask, gives_up_after_s=CLIENT_GIVES_UP_S)


def _client_hangs_up(gw: Gateway, ask: Ask) -> Ask:
    return replace(ask, leave_after=2)  # two events read, then the connection is closed


def refused(name: str, status: int, arm: Callable[[Gateway, Ask], Ask]) -> Stage:
    """Refused before any upstream call: nothing reserved, nothing called, the request ends as that error."""
    return Stage(name, lambda e: f"http {status}", lambda e: "error", arm, reaches_limits=False)


def upstream(name: str, client_sees: str, fault: str, *, streams_only: bool = False) -> Stage:
    """The upstream fails (a cache hit never calls it, and is served)."""
    served = "ok"
    return Stage(
        name,
        lambda e: served if e.cached else client_sees,
        lambda e: served if e.cached else "error",
        _fault(fault),
        streams_only=streams_only,
    )


def hangs_up(name: str, *, on_disconnect: str = "cancel") -> Stage:
    """The client reads two events of a stream and hangs up (a replay may have been sent whole by then)."""
    return Stage(
        name,
        lambda e: "left",
        lambda e: "ok|cancelled" if e.cached else "cancelled",
        _client_hangs_up,
        streams_only=True,
        on_disconnect=on_disconnect,
    )


OK = "ok"
STAGES = [
    Stage("no-failure", lambda e: OK, lambda e: OK),
    refused("auth", 401, lambda gw, ask: replace(ask, key="sk-unknown")),
    refused("budget", 402, lambda gw, ask: replace(ask, key=gw.keys["poor"])),
    refused("routing", 404, lambda gw, ask: replace(ask, model="no-such-model")),
    upstream("upstream-error", "http 502", "fail"),
    upstream("upstream-bug", "http 500", "bug"),
    upstream("upstream-breaks-mid-stream", "in-band error", "break", streams_only=True),
    # The client gives up before the answer: a JSON answer is still finished and recorded; a stream
    # is closed as soon as margin finds the client gone; a long replay may outlast its patience.
    Stage(
        "client-gives-up-waiting",
        lambda e: "ok|left" if e.cached else "left",
        lambda e: "ok|cancelled" if e.cached else "cancelled" if e.streams else OK,
        _client_gives_up,
    ),
    hangs_up("client-hangs-up-mid-stream"),
    hangs_up("client-hangs-up-drained", on_disconnect="drain"),
    Stage("ledger-down", lambda e: OK, lambda e: OK, _ledger_down),
]

CASES = [
    pytest.param(endpoint, stage, id=f"{endpoint.name}-{stage.name}")
    for endpoint in ENDPOINTS
    for stage in STAGES
    if endpoint.streams or not stage.streams_only
]


async def outcome(endpoint: Endpoint, gw: Gateway, ask: Ask) -> str:
    try:
        async with asyncio.timeout(ask.gives_up_after_s):  # cancelling the call closes its connection
            return await endpoint.send(gw, ask)
    except TimeoutError:
        return "left"
    except (openai.APIStatusError, anthropic.APIStatusError) as error:
        # An error event inside a 200 stream surfaces as a status error carrying the 200.
        return "in-band error" if error.status_code == 200 else f"http {error.status_code}"
    except (openai.APIError, anthropic.APIError):
        return "in-band error"


# --- the test ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("endpoint", "stage"), CASES)
async def test_each_request_ends_once_and_leaves_nothing_held(tmp_path: Path, endpoint: Endpoint, stage: Stage) -> None:
    async with gateway(tmp_path, on_disconnect=stage.on_disconnect) as gw:
        ask = Ask(key=gw.keys["good"], model=endpoint.model, text=LONG if endpoint.cached else WORDS)
        if endpoint.warm is not None:
            ask = replace(ask, cacheable=True)
            assert await endpoint.warm(gw, ask) == "ok"
            await gw.ended(1)
        sent = len(gw.records) + 1
        calls_before = gw.upstream_calls()

        seen = await outcome(endpoint, gw, stage.arm(gw, ask))
        assert seen in stage.client_sees(endpoint).split("|"), seen
        await gw.ended(sent)

        assert await gw.counters.held() == 0, "a reservation was left held"
        assert all(n == 0 for n in gw.pipeline.caller.in_flight.values()), "an upstream attempt was left open"
        last = gw.records[-1]
        check_status(endpoint, stage, last)
        if not stage.reaches_limits:
            assert gw.upstream_calls() == calls_before and last.ctx.attempts == []
        elif not endpoint.cached:
            assert gw.counters.reservations >= 1 and last.ctx.attempts, "the request never got to hold anything"
    # Shut down: every settle applied, every record written, every row in the store or the spill file.
    assert await gw.counters.held() == 0
    check_ended_once(gw.records, sent)
    check_ledger(gw, expected_rows(gw.records))


def check_status(endpoint: Endpoint, stage: Stage, record: RequestRecord) -> None:
    expected = stage.ends_as(endpoint)
    if expected == "error":
        assert record.status not in ("ok", "cancelled"), record.status
    else:
        assert record.status in expected.split("|"), (record.status, expected)
    if expected == "error" and stage.reaches_limits:
        assert record.ctx.attempts and all(a.status == "error" for a in record.ctx.attempts)


def check_ended_once(records: list[RequestRecord], sent: int) -> None:
    ends = Counter(r.ctx.request_id for r in records)
    assert len(records) == sent and set(ends.values()) == {1}, ends


# How a request that margin's own budget or rate limit refused ends (it gets one `refused` row).
REFUSALS = frozenset({"BudgetRefusal", "BudgetExceededAsRateLimit", "RateLimited"})


def expected_rows(records: list[RequestRecord]) -> Counter[str]:
    """One row per upstream attempt of every request, the one row of a cache hit, or the one row of
    a request margin's limits refused."""
    ids: Counter[str] = Counter()
    for record in records:
        ctx = record.ctx
        if ctx.cache_row is not None:
            ids[ctx.cache_row.attempt_id] += 1
        elif not ctx.attempts and record.status in REFUSALS:
            ids[f"{ctx.request_id}:0"] += 1
        else:
            ids.update(f"{ctx.request_id}:{attempt.index}" for attempt in ctx.attempts)
    return ids


def check_ledger(gw: Gateway, expected: Counter[str]) -> None:
    with sqlite3.connect(gw.data_dir / "ledger.db") as conn:
        stored = Counter(row[0] for row in conn.execute("SELECT attempt_id FROM ledger_attempts"))
    spilled: Counter[str] = Counter()
    for spill in gw.data_dir.glob("ledger-spill.jsonl*"):
        spilled.update(json.loads(line)["attempt_id"] for line in spill.read_text().splitlines() if line)
    assert stored + spilled == expected, {"stored": stored, "spilled": spilled, "expected": expected}
    if gw.ledger.down:  # the rows of the request sent while the database was down wait in the spill file
        last = expected_rows(gw.records[-1:])
        assert last and spilled & last == last, spilled


def test_every_model_serving_route_is_exercised() -> None:
    """A new model-serving route gets a line in ENDPOINTS (or, if it never reaches a model, here)."""
    # Files, batches and feedback never call a model in the request: batch lines enter the pipeline from
    # the batch worker, one RequestLifecycle each (tests/e2e/test_batch*.py), feedback only scores a row.
    never_a_model = ("/v1/files", "/v1/batches", "/v1/messages/batches", "/v1/feedback")
    posted = {
        r.path
        for r in build_routes()
        if isinstance(r, Route) and "POST" in (r.methods or ()) and r.path.startswith("/v1/")
    }
    assert {path for path in posted if not path.startswith(never_a_model)} == {e.path for e in ENDPOINTS}
