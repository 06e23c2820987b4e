"""Cascades on the request path: cheap answer checked, accepted or escalated; both attempts metered;
streams replayed or streamed from the next tier; a tier that is down overflows upward, labelled."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

from policy_support import FailingProvider, RecordingProvider, build, chat, context

from margin.api.openai import response_headers
from margin.pipeline.ledger_rows import rows_for
from margin.pipeline.route_labels import route_headers

CASCADE = """
  - name: auto
    tiers:
      - {name: small, deployments: [small]}
      - {name: big, deployments: [big]}
    routing:
      cascade: {checks: [format, json, logprob], min_mean_logprob: -0.3}
"""
# The fake's logprobs are -0.05 per character of each word: short words pass -0.3, long ones fail.
EASY = "yes it is ok"
HARD = "incomprehensibilities notwithstanding"


async def test_accepted_cheap_answer_is_served_and_labelled(tmp_path: Path) -> None:
    pipeline, records = build(tmp_path, CASCADE)
    ctx = context()
    result = await pipeline.chat(ctx, chat(EASY))
    assert ctx.deployment == "small"
    assert [a.deployment for a in ctx.attempts] == ["small"]
    assert result.body["choices"][0]["logprobs"] is None  # asked for the check, not by the client
    headers = route_headers(ctx)
    assert headers["x-margin-route"].startswith("cascade;tier=small;deployment=small")
    assert headers["x-margin-cascade"] == "accepted"
    assert "logprob=-0.112>=-0.3" in headers["x-margin-cascade-check"]
    assert len(records) == 1


async def test_rejected_cheap_answer_escalates_and_both_attempts_are_billed(tmp_path: Path) -> None:
    pipeline, _ = build(tmp_path, CASCADE)
    ctx = context()
    await pipeline.chat(ctx, chat(HARD))
    assert [a.deployment for a in ctx.attempts] == ["small", "big"]
    cheap, premium = ctx.attempts
    assert cheap.status == "ok" and cheap.cost is not None and cheap.cost.total.usd > 0
    assert ctx.cost is not None and ctx.cost.total.usd == cheap.cost.total.usd + premium.cost.total.usd  # type: ignore[union-attr]
    headers = route_headers(ctx)
    assert headers["x-margin-cascade"] == "escalated"
    assert headers["x-margin-route"].startswith("cascade;tier=big;deployment=big;chosen=small")
    rows = rows_for(ctx)
    assert [r.is_final for r in rows] == [False, True]
    assert rows[0].extra["cascade"] == "rejected" and rows[0].extra["cascade_check"].startswith("logprob=")
    # savings: the premium answer saved nothing, the rejected cheap attempt is pure overhead
    assert rows[1].routing_savings == 0
    assert rows[0].routing_savings == -rows[0].cost_total


async def test_accepted_answer_saves_the_premium_price_difference(tmp_path: Path) -> None:
    pipeline, _ = build(tmp_path, CASCADE)
    ctx = context()
    await pipeline.chat(ctx, chat(EASY))
    (row,) = rows_for(ctx)
    usage = ctx.usage
    assert usage is not None
    premium = (Decimal(usage.input_total) * 5 + Decimal(usage.output_total) * 15) / 10**6
    assert row.routing_savings == premium - row.cost_total > 0
    assert ctx.counterfactual is not None and ctx.counterfactual.total.usd == premium


async def test_json_schema_check_escalates_an_answer_missing_a_required_field(tmp_path: Path) -> None:
    pipeline, _ = build(tmp_path, CASCADE)
    schema = {"type": "object", "properties": {"result": {"type": "string"}}, "required": ["result"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "r", "schema": schema}}
    ctx = context()
    await pipeline.chat(ctx, chat(EASY, response_format=fmt))  # the fake answers {"answer": ...}
    assert [a.deployment for a in ctx.attempts] == ["small", "big"]
    assert ctx.route_outcome.check == "json=$: missing result"


async def test_a_cheap_tier_that_is_down_overflows_upward_labelled(tmp_path: Path) -> None:
    pipeline, _ = build(tmp_path, CASCADE, small=FailingProvider)
    ctx = context()
    await pipeline.chat(ctx, chat(EASY))
    assert ctx.deployment == "big"
    assert route_headers(ctx)["x-margin-overflow"] == "small->big"


async def test_streamed_request_replays_the_accepted_cheap_answer(tmp_path: Path) -> None:
    pipeline, records = build(tmp_path, CASCADE, small=RecordingProvider)
    ctx = context()
    request = chat(EASY)
    request.stream = True
    chunks = [c async for c in await pipeline.stream(ctx, request)]
    text = "".join(c.body["choices"][0]["delta"].get("content") or "" for c in chunks if c.body.get("choices"))
    assert text == EASY
    assert all(c.usage is None for c in chunks)  # the usage chunk was not asked for: stripped
    provider = pipeline.caller.providers["small"]
    assert [r.stream for r in provider.seen] == [False]  # type: ignore[attr-defined]
    assert ctx.usage is not None and ctx.usage.source == "reported"
    assert records[-1].status == "ok" and len(ctx.attempts) == 1


async def test_streamed_request_streams_from_the_next_tier_when_rejected(tmp_path: Path) -> None:
    pipeline, _ = build(tmp_path, CASCADE, big=RecordingProvider)
    ctx = context()
    request = chat(HARD)
    request.stream = True
    request.include_usage = True
    chunks = [c async for c in await pipeline.stream(ctx, request)]
    assert chunks[-1].usage is not None
    provider = pipeline.caller.providers["big"]
    assert [r.stream for r in provider.seen] == [True]  # type: ignore[attr-defined]
    assert [a.deployment for a in ctx.attempts] == ["small", "big"]
    assert ctx.route_outcome.cascade == "escalated"


VERIFIED = """
  - name: auto
    tiers:
      - {name: small, deployments: [small]}
      - {name: big, deployments: [big]}
    routing:
      cascade: {checks: [format, verifier], verifier: {model: VERIFIER}}
"""


async def test_a_verifier_that_says_yes_accepts_and_its_call_is_its_own_ledger_request(tmp_path: Path) -> None:
    pipeline, records = build(tmp_path, VERIFIED.replace("VERIFIER", "judge"))
    ctx = context()
    await pipeline.chat(ctx, chat(HARD))
    assert ctx.deployment == "small" and ctx.route_outcome.check == "format=ok,verifier=accept"
    verifier = next(r for r in records if r.ctx.request_id.endswith("-verify"))
    (row,) = rows_for(verifier.ctx)
    assert row.route_policy == "cascade-verifier" and row.deployment == "judge"
    assert row.routing_savings == -row.cost_total < 0


async def test_a_verifier_that_says_no_escalates(tmp_path: Path) -> None:
    pipeline, _ = build(tmp_path, VERIFIED.replace("VERIFIER", "nay"))
    ctx = context()
    await pipeline.chat(ctx, chat(EASY))
    assert ctx.deployment == "big" and ctx.route_outcome.check == "verifier=reject"


THREE = """
  - name: auto
    tiers:
      - {name: small, deployments: [small, small-b]}
      - {name: mid, deployments: [mid]}
      - {name: big, deployments: [big]}
    routing:
      cascade: {checks: [logprob], min_mean_logprob: -0.3, up_to: mid}
"""


async def test_cascade_stops_at_up_to_and_keeps_failover_inside_a_tier(tmp_path: Path) -> None:
    pipeline, _ = build(tmp_path, THREE, small=FailingProvider)
    ctx = context()
    await pipeline.chat(ctx, chat(HARD))
    assert [a.deployment for a in ctx.attempts] == ["small", "small", "small-b", "mid"]  # one retry in place
    assert ctx.decision is not None and "big" not in ctx.decision.deployments
    assert ctx.route_outcome.cascade == "escalated"


async def test_response_headers_carry_the_route(tmp_path: Path) -> None:
    pipeline, _ = build(tmp_path, CASCADE)
    ctx = context()
    await pipeline.chat(ctx, chat(EASY))

    headers = response_headers(ctx)
    assert headers["x-margin-deployment"] == "small" and headers["x-margin-cascade"] == "accepted"
    assert json.dumps(headers)  # all strings
