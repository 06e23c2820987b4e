"""The cost-quality trade-off, measured: routed traffic in the ledger (SQLite, migrated to 0003),
`margin report --by tier` with the all-premium counterfactual, and the Prometheus route metrics."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from policy_support import FailingProvider, build, chat, context

from margin.ledger.report import build_spend_report, report_to_json
from margin.ledger.report_render import render
from margin.ledger.spill import row_from_json, row_to_json
from margin.pipeline.ledger_rows import rows_for
from margin.storage import open_ledger_store

CASCADE = """
  - name: auto
    tiers:
      - {name: small, deployments: [small]}
      - {name: big, deployments: [big]}
    routing:
      cascade: {checks: [logprob], min_mean_logprob: -0.3}
"""
EASY, HARD = "yes it is ok", "incomprehensibilities notwithstanding"


async def test_report_by_tier_shows_spend_and_the_all_premium_counterfactual(tmp_path: Path) -> None:
    pipeline, _ = build(tmp_path, CASCADE)
    contexts = []
    for i, text in enumerate([EASY, EASY, EASY, HARD]):
        ctx = context()
        ctx.request_id = f"req_{i}"
        await pipeline.chat(ctx, chat(text))
        contexts.append(ctx)
    static = context()
    static.request_id = "req_static"
    await pipeline.chat(static, chat(EASY, model="plain"))
    rows = [row for ctx in [*contexts, static] for row in rows_for(ctx)]
    store = open_ledger_store("sqlite:///{data_dir}/ledger.db", tmp_path)
    assert "0003_route_counterfactual" in await store.migrate()
    await store.write(rows)
    now = datetime.now(UTC)
    report = await build_spend_report(store, since=now - timedelta(hours=1), until=now, group_by="tier")
    await store.close()
    by_tier = {line.group: line for line in report.lines}
    spend = sum((ctx.cost.total.usd for ctx in [*contexts, static] if ctx.cost), Decimal(0))
    counterfactual = sum((ctx.counterfactual.total.usd for ctx in contexts if ctx.counterfactual), Decimal(0))
    counterfactual += static.cost.total.usd  # type: ignore[union-attr]  # untiered: its own spend
    assert report.total.spend == spend
    assert report.total.all_premium == counterfactual > spend
    assert report.total.routing_savings == counterfactual - spend
    assert by_tier["1"].requests == 4 and by_tier["1"].successful == 3  # 4 started cheap, 3 answered there
    assert by_tier["3"].successful == 2 and by_tier["3"].routing_savings == 0
    assert by_tier["1"].routing_savings > 0
    # `margin reprice` can price the counterfactual again: the answering row names the premium
    # deployment, the rejected cheap answer is pure overhead, the untiered row takes no part.
    hard = rows_for(contexts[3])
    assert [(r.is_final, r.extra.get("counterfactual")) for r in hard] == [(False, "none"), (True, "big")]
    assert rows_for(contexts[0])[0].extra["counterfactual"] == "big"
    assert "counterfactual" not in rows_for(static)[0].extra
    table = render(report, "table", wide=True)
    assert "all-premium" in table and "routing saved" in table
    total = report_to_json(report)["total"]
    assert Decimal(total["all_premium_usd"]) - Decimal(total["spend_usd"]) == Decimal(total["routing_savings_usd"])


def test_routing_savings_survive_the_spill_file_exactly(tmp_path: Path) -> None:
    from margin.storage.ledger_row import LedgerRow

    row = LedgerRow(
        attempt_id="r:0", request_id="r", attempt_index=0, ts=time.time(), endpoint="chat", key_id="k", org="o",
        team="t", user="u", tags=(), endpoint_class="interactive", model_group="auto", route_policy="cascade",
        tier=1, deployment="small", model="small-model", fallback_index=0, is_final=False, status="ok",
        error_class=None, latency_ms=1.0, ttft_ms=None, tokens_per_s=None, routing_savings=Decimal("-0.000012"),
    )  # fmt: skip
    assert row_from_json(row_to_json(row)).routing_savings == Decimal("-0.000012")


async def test_route_metrics(tmp_path: Path) -> None:
    pipeline, records = build(tmp_path, CASCADE, small=FailingProvider)
    ctx = context()
    await pipeline.chat(ctx, chat(EASY))
    ctx2 = context()
    pipeline2, records2 = build(tmp_path, CASCADE)
    await pipeline2.chat(ctx2, chat(HARD))
    metrics = pipeline.recorder.metrics
    for record in records:
        pipeline.recorder._observe(record)
    for record in records2:
        pipeline.recorder._observe(record)
    text = metrics.render().decode()
    assert 'margin_route_requests_total{model_group="auto",policy="cascade",tier="big"} 2.0' in text
    assert 'margin_route_overflow_total{from_tier="small",model_group="auto",to_tier="big"} 1.0' in text
    assert 'margin_cascade_total{model_group="auto",outcome="escalated",tier="small"} 1.0' in text
    assert 'margin_route_spend_micro_usd_total{model_group="auto",tier="small"}' in text
    assert "margin_route_premium_counterfactual_micro_usd_total" in text
    assert 'margin_router_latency_seconds_count{policy="cascade"} 2.0' in text
