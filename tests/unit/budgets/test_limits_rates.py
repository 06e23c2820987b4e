"""Rate limits, concurrency, priority classes, token budgets and model/cost-rank restrictions through the
request path."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from limits_support import serve


async def test_requests_per_minute_per_key_with_retry_after(tmp_path: Path) -> None:
    async with serve(tmp_path, "rate_limits: [{scope: 'key:*', requests_per_minute: 3}]") as gw:
        key, _ = await gw.create_key()
        other, _ = await gw.create_key()
        assert [(await gw.chat(key, model="cheap")).status_code for _ in range(4)] == [200, 200, 200, 429]
        refused = await gw.chat(key, model="cheap")
        assert refused.json()["error"]["code"] == "rate_limit_exceeded"
        assert 1 <= int(refused.headers["retry-after"]) <= 5
        assert (await gw.chat(other, model="cheap")).status_code == 200  # each key its own counter
        assert gw.calls() == 4


async def test_tokens_per_minute_reserve_the_worst_case_and_settle_to_actual(tmp_path: Path) -> None:
    async with serve(tmp_path) as gw:
        key, _ = await gw.create_key(tokens_per_minute=100)
        # prompt 9 tokens + max_tokens 41 = 50 worst case; the fake answers 3 tokens: 12 actual
        first = await gw.chat(key, model="cheap", max_tokens=41)
        await gw.settled()
        assert first.status_code == 200
        statuses = []
        for _ in range(5):
            statuses.append((await gw.chat(key, model="cheap", max_tokens=41)).status_code)
            await gw.settled()
        assert statuses == [200, 200, 200, 200, 429]  # 5 x 12 + 50 > 100


async def test_a_token_budget_limits_a_zero_priced_self_hosted_tier(tmp_path: Path) -> None:
    budget = "budgets: [{scope: 'deployment:selfhosted', limit_tokens: 30, window: day}]"
    async with serve(tmp_path, budget) as gw:
        statuses = []
        for _ in range(4):
            statuses.append((await gw.chat(None, model="local", max_tokens=3)).status_code)
            await gw.settled()
        assert statuses == [200, 200, 402, 402]  # 12 tokens each: 24 + 12 > 30
        assert (await gw.chat(None, model="cheap", max_tokens=3)).status_code == 200  # other deployments


async def test_concurrency_per_team_queues_then_refuses(tmp_path: Path) -> None:
    config = "rate_limits: [{scope: 'team:*', concurrency: 1}]\nlimits: {priority: {queue_timeout_s: 0.1}}"
    async with serve(tmp_path, config) as gw:
        key, _ = await gw.create_key(team="noisy")
        calm, _ = await gw.create_key(team="calm")
        first = asyncio.create_task(gw.chat(key, model="slow"))
        await asyncio.sleep(0.05)
        started = time.perf_counter()
        second = await gw.chat(key, model="slow")
        assert second.status_code == 429 and second.json()["error"]["code"] == "concurrency_limit_exceeded"
        assert 0.09 <= time.perf_counter() - started < 0.3  # waited for a slot, then gave up
        assert (await gw.chat(calm, model="cheap")).status_code == 200  # another tenant is not starved
        assert (await first).status_code == 200
        await gw.settled()
        assert (await gw.chat(key, model="cheap")).status_code == 200  # the slot was released


async def test_interactive_requests_take_freed_slots_before_batch_ones(tmp_path: Path) -> None:
    config = (
        "rate_limits: [{scope: 'deployment:slow', concurrency: 2}]\n"
        "limits: {priority: {queue_timeout_s: 2, batch_share: 0.5, poll_ms: 500}}"
    )
    async with serve(tmp_path, config) as gw:
        batch, _ = await gw.create_key(endpoint_class="batch")
        interactive, _ = await gw.create_key(endpoint_class="interactive")
        order: list[str] = []

        async def run(key: str, label: str) -> None:
            response = await gw.chat(key, model="slow")
            assert response.status_code == 200
            order.append(label)

        holders = [asyncio.create_task(run(batch, "batch-0")), asyncio.create_task(run(interactive, "first"))]
        await asyncio.sleep(0.05)  # batch holds 1 of 2 slots (its share) and interactive the other
        waiting = [asyncio.create_task(run(batch, "batch-1")), asyncio.create_task(run(interactive, "second"))]
        await asyncio.gather(*holders, *waiting)
        assert order.index("second") < order.index("batch-1")


async def test_model_and_cost_rank_restrictions(tmp_path: Path) -> None:
    async with serve(tmp_path) as gw:
        only_cheap, _ = await gw.create_key(allowed_models=["cheap"])
        rank_one, _ = await gw.create_key(allowed_cost_ranks=[1], budget={"limit_usd": "0.03"})
        assert (await gw.chat(only_cheap, model="chat")).status_code == 403
        assert (await gw.chat(only_cheap, model="cheap")).status_code == 200
        assert (await gw.chat(rank_one, model="local")).status_code == 403  # cost_rank 0 only
        # `chat` may fall back to the rank-2 deployment; this key is held to cost_rank 1, so its worst case
        # is priced on `small` only ($0.019 with max_tokens 10) and fits its $0.03 budget.
        response = await gw.chat(rank_one, model="chat", max_tokens=10)
        assert response.status_code == 200 and response.headers["x-margin-deployment"] == "small"
