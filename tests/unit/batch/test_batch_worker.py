"""The batch worker in one process over a real SQLite store and blob directory, with a scripted line
executor and a frozen clock: expiry delivers what finished, a spent budget pauses the batch and it
resumes, transient failures are tried again, two workers share one batch without running a line
twice, and a batch left `validating` by a crash is validated when a worker starts."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from margin import errors
from margin.batch.service import NewBatch
from margin.batch.tier import BatchTier
from margin.config.batch import BatchConfig
from margin.pipeline.context import RequestContext
from margin.storage.batch_stores import open_batch_store, open_blob_store
from margin.storage.batches import BatchRecord
from margin.types import Principal

OWNER = Principal(key_id="key_test", team="research", tags=("nightly",))


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Executor:
    """Answers each line with its prompt; `failures` scripts errors per custom prompt, `gate` holds lines."""

    def __init__(self) -> None:
        self.running = 0
        self.most_running = 0
        self.calls: Counter[str] = Counter()
        self.failures: dict[str, list[errors.MarginError]] = {}
        self.gate: asyncio.Event | None = None
        self.contexts: list[RequestContext] = []

    def check(self, endpoint: str, body: dict[str, Any]) -> tuple[str, str | None] | None:
        return None if "messages" in body else ("messages is required", "messages")

    async def run(self, ctx: RequestContext, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        prompt = body["messages"][0]["content"]
        self.calls[prompt] += 1
        self.contexts.append(ctx)
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await asyncio.sleep(0.005)
            if self.gate is not None:
                await self.gate.wait()
        finally:
            self.running -= 1
        pending = self.failures.get(prompt)
        if pending:
            raise pending.pop(0)
        return {"object": "chat.completion", "choices": [{"message": {"content": prompt}}]}


def lines(count: int) -> bytes:
    rows = [
        {"custom_id": f"c{n}", "method": "POST", "url": "/v1/chat/completions",
         "body": {"model": "m", "messages": [{"role": "user", "content": f"p{n}"}]}}
        for n in range(count)
    ]  # fmt: skip
    return "\n".join(json.dumps(r) for r in rows).encode()


async def once(data: bytes) -> AsyncIterator[bytes]:
    yield data


def make_tier(
    tmp_path: Path, executor: Executor, clock: Clock, owner: str, load: Callable[[], int] | None = None,
    **settings: Any,
) -> BatchTier:  # fmt: skip
    values: dict[str, Any] = {"poll_s": 0.02, "lease_s": 5, "chunk_lines": 3, "concurrency": 4, "retry_backoff_s": 0}
    config = BatchConfig(**(values | settings))
    store = open_batch_store(f"sqlite:///{tmp_path}/margin.db", tmp_path)
    return BatchTier.build(config, store, open_blob_store("{data_dir}/blobs", tmp_path), executor, clock=clock,
                           owner=owner, load=load)  # fmt: skip


async def submit(tier: BatchTier, count: int) -> str:
    file = await tier.files.upload(OWNER.key_id, "in.jsonl", "batch", once(lines(count)))
    batch = await tier.batches.create(OWNER, NewBatch(file.file_id, "/v1/chat/completions", "24h"))
    return batch.batch_id


async def until(
    tier: BatchTier, batch_id: str, done: Callable[[BatchRecord], bool], timeout: float = 10
) -> BatchRecord:
    async with asyncio.timeout(timeout):
        while True:
            record = await tier.batches.get(OWNER.key_id, batch_id)
            if done(record):
                return record
            await asyncio.sleep(0.02)


async def output(tier: BatchTier, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    record = await tier.files.get(OWNER.key_id, file_id)
    data = b"".join([block async for block in tier.files.content(record)])
    return [json.loads(line) for line in data.splitlines()]


async def test_lines_run_as_the_creator_at_the_batch_class_tagged_with_the_batch(tmp_path: Path) -> None:
    executor, clock = Executor(), Clock()
    tier = make_tier(tmp_path, executor, clock, "w1")
    await tier.start()
    try:
        batch_id = await submit(tier, 7)
        done = await until(tier, batch_id, lambda b: b.is_final)
    finally:
        await tier.stop()
    assert done.status == "completed" and (done.total, done.completed, done.failed) == (7, 7, 0)
    assert Counter(executor.calls) == Counter({f"p{n}": 1 for n in range(7)})
    principal = executor.contexts[0].principal
    assert principal.key_id == "key_test" and principal.team == "research" and principal.endpoint_class == "batch"
    assert principal.tags == ("nightly", "batch", f"batch:{batch_id}")
    assert executor.contexts[0].endpoint == "chat" and executor.contexts[0].authenticated


async def test_expiry_delivers_what_finished_and_marks_the_rest_expired(tmp_path: Path) -> None:
    executor, clock = Executor(), Clock()
    tier = make_tier(tmp_path, executor, clock, "w1", concurrency=2)
    await tier.start()
    try:
        batch_id = await submit(tier, 9)
        executor.gate = asyncio.Event()
        await until(tier, batch_id, lambda b: b.status == "in_progress")
        while sum(executor.calls.values()) < 2:
            await asyncio.sleep(0.01)
        clock.now += 86_400  # the 24h window closes while two lines are in flight
        executor.gate.set()
        done = await until(tier, batch_id, lambda b: b.is_final)
        finished = await output(tier, done.output_file_id)
        unrun = await output(tier, done.error_file_id)
    finally:
        await tier.stop()
    assert done.status == "expired" and done.expired_at == clock.now
    assert len(finished) == 2 == sum(executor.calls.values())  # the two in flight finished and count
    assert {line["error"]["code"] for line in unrun} == {"batch_expired"} and len(unrun) == 7
    assert sorted(line["custom_id"] for line in finished + unrun) == sorted(f"c{n}" for n in range(9))


async def test_a_spent_budget_pauses_the_batch_which_resumes_later(tmp_path: Path) -> None:
    executor, clock = Executor(), Clock()
    executor.failures["p0"] = [errors.BudgetExceeded("team research has spent its budget")]
    tier = make_tier(tmp_path, executor, clock, "w1", concurrency=1, budget_pause_s=600)
    await tier.start()
    try:
        batch_id = await submit(tier, 4)
        paused = await until(tier, batch_id, lambda b: b.paused is not None)
        assert paused.status == "in_progress" and paused.paused_until == clock.now + 600
        assert "budget" in (paused.paused or "") and paused.completed <= 1  # a line of another chunk may go first
        calls_at_pause = sum(executor.calls.values())
        await asyncio.sleep(0.2)
        assert sum(executor.calls.values()) == calls_at_pause  # nothing starts while paused
        clock.now += 601
        done = await until(tier, batch_id, lambda b: b.is_final)
    finally:
        await tier.stop()
    assert done.status == "completed" and done.completed == 4 and executor.calls["p0"] == 2
    assert done.paused is None and done.paused_until is None


async def test_transient_failures_are_tried_again_and_others_fail_the_line(tmp_path: Path) -> None:
    executor, clock = Executor(), Clock()
    executor.failures["p0"] = [errors.UpstreamOverloaded("busy"), errors.RateLimited("slow down")]
    executor.failures["p1"] = [errors.InvalidRequest("bad temperature", param="temperature")]
    tier = make_tier(tmp_path, executor, clock, "w1")
    await tier.start()
    try:
        batch_id = await submit(tier, 2)
        done = await until(tier, batch_id, lambda b: b.is_final)
        [failed] = await output(tier, done.error_file_id)
    finally:
        await tier.stop()
    assert (done.completed, done.failed) == (1, 1) and executor.calls == Counter({"p0": 3, "p1": 1})
    assert failed["custom_id"] == "c1" and failed["response"]["status_code"] == 400
    assert failed["response"]["body"]["error"]["param"] == "temperature"


async def test_two_workers_share_a_batch_and_run_each_line_once(tmp_path: Path) -> None:
    executor, clock = Executor(), Clock()
    first = make_tier(tmp_path, executor, clock, "w1")
    second = make_tier(tmp_path, executor, clock, "w2")
    await first.start()
    await second.start()
    try:
        batch_id = await submit(first, 40)
        done = await until(first, batch_id, lambda b: b.is_final)
    finally:
        await first.stop()
        await second.stop()
    assert done.completed == 40 and executor.calls == Counter({f"p{n}": 1 for n in range(40)})
    owners = {ctx.request_id for ctx in executor.contexts}
    assert len(owners) == 40


async def test_a_batch_left_validating_by_a_crash_is_validated_on_start(tmp_path: Path) -> None:
    executor, clock = Executor(), Clock()
    crashed = make_tier(tmp_path, executor, clock, "host:1:dead")
    await crashed.store.migrate()
    batch_id = await submit(crashed, 3)  # created, never validated: that process died
    await crashed.store.close()
    tier = make_tier(tmp_path, executor, clock, "w2")
    await tier.start()
    try:
        done = await until(tier, batch_id, lambda b: b.is_final)
    finally:
        await tier.stop()
    assert done.status == "completed" and done.completed == 3


@pytest.mark.parametrize("window", ["24h", "1h"])
async def test_windows_other_than_the_configured_ones_are_refused(tmp_path: Path, window: str) -> None:
    tier = make_tier(tmp_path, Executor(), Clock(), "w1")
    await tier.store.migrate()
    try:
        file = await tier.files.upload(OWNER.key_id, "in.jsonl", "batch", once(lines(1)))
        request = NewBatch(file.file_id, "/v1/chat/completions", window)
        if window == "24h":
            assert (await tier.batches.create(OWNER, request)).expires_at == 1_000_000.0 + 86_400
        else:
            with pytest.raises(errors.InvalidRequest, match="completion_window"):
                await tier.batches.create(OWNER, request)
    finally:
        await tier.store.close()


async def test_lines_whose_input_file_was_deleted_fail_instead_of_hanging(tmp_path: Path) -> None:
    executor, clock = Executor(), Clock()
    tier = make_tier(tmp_path, executor, clock, "w1", concurrency=1)
    await tier.start()
    try:
        batch_id = await submit(tier, 9)
        executor.gate = asyncio.Event()
        running = await until(tier, batch_id, lambda b: b.status == "in_progress")
        while not executor.calls:
            await asyncio.sleep(0.01)
        await tier.files.delete(OWNER.key_id, running.input_file_id)
        executor.gate.set()
        done = await until(tier, batch_id, lambda b: b.is_final)
        failed = await output(tier, done.error_file_id)
    finally:
        await tier.stop()
    assert done.status == "completed" and done.completed + done.failed == 9 and done.failed >= 3
    assert {line["error"]["code"] for line in failed} == {"file_not_found"}


async def test_busy_interactive_traffic_backs_the_batch_off_to_one_line_at_a_time(tmp_path: Path) -> None:
    executor, clock = Executor(), Clock()
    interactive = [50]  # upstream calls open on this replica besides the batch's own
    tier = make_tier(tmp_path, executor, clock, "w1", load=lambda: interactive[0] + executor.running,
                     concurrency=8, yield_above_in_flight=4, pressure_check_s=0.01)  # fmt: skip
    await tier.start()
    try:
        await asyncio.sleep(0.1)  # the throttle has looked at the load: 8 -> 1
        batch_id = await submit(tier, 12)
        await until(tier, batch_id, lambda b: b.is_final)
        crowded = executor.most_running
        interactive[0] = 0
        executor.most_running = 0
        await asyncio.sleep(0.2)  # pressure gone: the limit climbs back to 8
        second = await submit(tier, 24)
        await until(tier, second, lambda b: b.is_final)
    finally:
        await tier.stop()
    assert crowded == 1 and executor.most_running > 1


async def test_lines_start_only_inside_the_off_peak_window(tmp_path: Path) -> None:
    executor, clock = Executor(), Clock()
    clock.now = datetime(2026, 1, 10, 12, 0, tzinfo=UTC).timestamp()
    tier = make_tier(tmp_path, executor, clock, "w1", windows=["22:00-06:00 UTC"])
    await tier.start()
    try:
        batch_id = await submit(tier, 3)
        await until(tier, batch_id, lambda b: b.status == "in_progress")  # validated at any hour
        await asyncio.sleep(0.2)
        assert sum(executor.calls.values()) == 0
        clock.now = datetime(2026, 1, 10, 22, 30, tzinfo=UTC).timestamp()
        done = await until(tier, batch_id, lambda b: b.is_final)
    finally:
        await tier.stop()
    assert done.status == "completed" and sum(executor.calls.values()) == 3


class TieredExecutor(Executor):
    """Lines name a model per tier; `interactive` is the interactive calls open on each tier's
    deployment, and each line holds its tier's deployment for 20 ms (as the caller counts it)."""

    def __init__(self) -> None:
        super().__init__()
        self.interactive: Counter[str] = Counter()
        self.open: Counter[str] = Counter()
        self.most: Counter[str] = Counter()
        self.finished: dict[str, list[float]] = {"local": [], "api": []}

    def tier_of(self, body: dict[str, Any]) -> tuple[str, ...]:
        return (str(body["model"]),)

    def tier_load(self, tier: tuple[str, ...]) -> int:
        names = tier or ("local", "api")
        return sum(self.interactive[n] + self.open[n] for n in names)

    async def run(self, ctx: RequestContext, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        name = str(body["model"])
        self.open[name] += 1
        self.most[name] = max(self.most[name], self.open[name])
        try:
            await asyncio.sleep(0.02)
        finally:
            self.open[name] -= 1
        self.finished[name].append(asyncio.get_running_loop().time())
        return {"object": "chat.completion", "choices": [{"message": {"content": name}}]}


def tier_lines(count: int, model: str, first: int = 0) -> bytes:
    rows = [
        {"custom_id": f"{model}{n}", "method": "POST", "url": "/v1/chat/completions",
         "body": {"model": model, "messages": [{"role": "user", "content": f"p{n}"}]}}
        for n in range(first, first + count)
    ]  # fmt: skip
    return "\n".join(json.dumps(r) for r in rows).encode()


async def test_a_crowded_tier_backs_off_its_own_lines_only(tmp_path: Path) -> None:
    """Interactive load on the local tier only: the local lines run one at a time while the API tier's
    lines, submitted after them, run at the full concurrency and finish first; then the other way round."""
    executor, clock = TieredExecutor(), Clock()
    executor.interactive["local"] = 50
    tier = make_tier(tmp_path, executor, clock, "w1", concurrency=8, chunk_lines=4, yield_above_in_flight=4,
                     pressure_check_s=0.01)  # fmt: skip
    await tier.start()
    try:
        loop = asyncio.get_running_loop()
        local_file = await tier.files.upload(OWNER.key_id, "l.jsonl", "batch", once(tier_lines(24, "local")))
        api_file = await tier.files.upload(OWNER.key_id, "a.jsonl", "batch", once(tier_lines(48, "api")))
        started = loop.time()
        local = await tier.batches.create(OWNER, NewBatch(local_file.file_id, "/v1/chat/completions", "24h"))
        api = await tier.batches.create(OWNER, NewBatch(api_file.file_id, "/v1/chat/completions", "24h"))
        await until(tier, api.batch_id, lambda b: b.is_final)
        api_s = loop.time() - started
        local_done_when_api_done = len(executor.finished["local"])
        await until(tier, local.batch_id, lambda b: b.is_final)
        local_s = loop.time() - started
        crowded = dict(executor.most)
        # The other way round: the API tier is crowded, the local one idle.
        executor.interactive.update({"local": -50, "api": 50})
        executor.most.clear()
        await asyncio.sleep(0.1)  # the back-off has looked at the new load: api 8 -> 1, local 1 -> 8
        both = await tier.files.upload(
            OWNER.key_id, "b.jsonl", "batch", once(tier_lines(16, "api", 100) + b"\n" + tier_lines(16, "local", 100))
        )
        mixed = await tier.batches.create(OWNER, NewBatch(both.file_id, "/v1/chat/completions", "24h"))
        await until(tier, mixed.batch_id, lambda b: b.is_final)
    finally:
        await tier.stop()
    # 48 API lines at 8 at a time of 20 ms: ~0.12 s of work; 24 local lines one at a time: ~0.48 s.
    assert crowded["local"] == 1 and crowded["api"] > 4, crowded
    assert api_s < local_s / 2 and local_done_when_api_done < 24, (api_s, local_s, local_done_when_api_done)
    assert executor.most["api"] == 1 and executor.most["local"] > 4, dict(executor.most)
