"""The worked examples of docs/planner.md, each number computed by hand there."""

from __future__ import annotations

from decimal import Decimal

import pytest
from planner_helpers import A10G_ONLY, profile

from margin.planner import Catalog, plan
from margin.planner.amounts import cents
from margin.planner.render.featured import cost_of

A10G_OPTION = "self_hosted:llama-3.1-8b:fp16:a10g:aws-g5.xlarge-us-east-1:on_demand"
API = "api:together/qwen2.5-7b-instruct-turbo"


def test_example_1_a10g_capacity_matches_hand_numbers(catalog: Catalog) -> None:
    result = plan(profile(availability={"min_replicas": 1}, candidates=A10G_ONLY), catalog)
    cap = next(h for h in result.classes[0].hosted if h.option.id == A10G_OPTION).capacity
    assert cap.memory.tensor_parallel == 1
    assert cap.memory.kv_cache_tokens == 41961  # (24 x 0.9 - 16.1) GB / 131072 B
    assert cap.memory.concurrent_sequences == 27  # 41961 // 1500
    assert cap.saturation_tok_s == pytest.approx(491 * 6.74 / 8.03)  # 412.12
    assert cap.single_stream_tok_s == pytest.approx(0.75 * 600 / 16.1)  # 27.95
    assert cap.ttft_s == pytest.approx(2 * 8.03e9 * 1000 / (70e12 * 0.4) + 16.1 / 450)  # 0.609
    assert cap.output_tok_s == pytest.approx(161.28, abs=0.01)  # latency-bound
    assert cap.binding == "latency SLA"


def test_example_1_a10g_costs_and_never(catalog: Catalog) -> None:
    result = plan(profile(availability={"min_replicas": 1}, candidates=A10G_ONLY), catalog)
    cp = result.classes[0]
    one_x, five_x = cp.scenarios[0], cp.scenarios[1]
    hosted = cost_of(one_x, A10G_OPTION)
    assert hosted.lines[0].amount == Decimal("734.38")  # 1 replica x 24 h x $1.006 x 730/24
    assert cents(hosted.total) == Decimal("12334.38")  # + 4000 build + 4000 run + 2000 on-call + 1600 upkeep
    assert cents(cost_of(one_x, API).total) == Decimal("136.88")  # 20k x 750 tok x $0.30/M x 730/24
    assert cost_of(five_x, A10G_OPTION).peak_replicas == 3  # 1.157 req/s / (0.6451 x 0.8)
    assert cost_of(five_x, A10G_OPTION).lines[0].amount == Decimal("2203.14")
    crossover = cp.crossover_for(A10G_OPTION)
    assert crossover is not None and crossover.requests_per_day is None
    assert crossover.reason.startswith("never: one replica (1 GPU) serves at most 1,017M tokens/month")
    assert crossover.break_even_utilization == pytest.approx(1.925, abs=0.001)
    assert one_x.recommendation.kind == "api"


def test_example_2_llama70b_int4_halves_gpus_on_l40s(catalog: Catalog) -> None:
    candidates = {
        "apis": [],
        "models": ["llama-3.1-70b"],
        "gpus": ["l40s"],
        "precisions": ["fp16", "int4"],
        "pricing": ["on_demand"],
        "managed": [],
    }
    batch = [{"name": "offline", "kind": "batch", "share": 1.0}]
    result = plan(profile(classes=batch, candidates=candidates), catalog)
    hosted = {h.option.id: h for h in result.classes[0].hosted}
    fp16 = hosted["self_hosted:llama-3.1-70b:fp16:l40s:aws-g6e.12xlarge-us-east-1:on_demand"]
    int4 = hosted["self_hosted:llama-3.1-70b:int4:l40s:aws-g6e.12xlarge-us-east-1:on_demand"]
    assert (fp16.capacity.gpus, int4.capacity.gpus) == (4, 2)
    assert fp16.capacity.memory.kv_cache_tokens == 96435  # (4 x 43.2 - 141.2) GB / 327680 B
    assert int4.capacity.memory.kv_cache_tokens == 143127  # (2 x 43.2 - 39.5) GB / 327680 B
    assert (fp16.pricing.replicas_per_instance, int4.pricing.replicas_per_instance) == (1, 2)
    # INT4 on one L40S (43.2 GB) would hold only 3.7 GB of KV = 11,291 tokens = 7 sequences < 16.
    single = hosted["self_hosted:llama-3.1-70b:int4:l40s:aws-g6e.16xlarge-us-east-1:on_demand"]
    assert single.capacity.gpus == 1 and single.capacity.memory.below_min_batch


def test_example_3_regulated_data_excludes_apis(catalog: Catalog) -> None:
    candidates = {"models": ["llama-3.1-8b"], "gpus": ["l4"], "precisions": ["fp8"], "pricing": ["on_demand"]}
    limited = plan(profile(sensitivity="regulated", ops_capacity="limited", candidates=candidates), catalog)
    rec = limited.classes[0].scenarios[0].recommendation
    assert rec.kind == "managed"
    assert any(r.startswith("hard constraint: regulated data") for r in rec.reasons)
    assert any(r.startswith("hard constraint: ops capacity limited") for r in rec.reasons)
    nobody = plan(profile(sensitivity="regulated", ops_capacity="none", candidates=candidates), catalog)
    assert nobody.classes[0].scenarios[0].recommendation.kind is None


SPIKY = [0.0] * 9 + [1.0] * 8 + [0.0] * 7  # 8 busy hours, nothing at night


def test_example_4_scale_to_zero_pays_for_spiky_traffic(catalog: Catalog) -> None:
    candidates = {
        "apis": ["together/qwen2.5-7b-instruct-turbo"],
        "models": ["llama-3.1-8b"],
        "gpus": ["l4"],
        "providers": ["aws"],
        "precisions": ["fp8"],
        "pricing": ["on_demand"],
        "managed": [],
    }
    option = "self_hosted:llama-3.1-8b:fp8:l4:aws-g6.xlarge-us-east-1:on_demand"
    costs = {}
    for scale_to_zero in (False, True):
        result = plan(
            profile(
                hourly_weights=SPIKY,
                candidates=candidates,
                availability={"min_replicas": 1, "scale_to_zero": scale_to_zero},
            ),
            catalog,
        )
        costs[scale_to_zero] = cost_of(result.classes[0].scenarios[0], option)
    busy = costs[True].peak_replicas
    assert costs[True].instance_hours_per_day == 8 * busy
    assert costs[False].instance_hours_per_day == 8 * busy + 16
    assert costs[False].lines[0].amount - costs[True].lines[0].amount == Decimal("0.8048") * 16 * 730 / 24
