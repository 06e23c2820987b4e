"""The route stage for tiered groups: rules, hints (pin, cap), defaults, overflow and margin/auto."""

from __future__ import annotations

from pathlib import Path

import pytest
from policy_support import build, chat, context

from margin import errors
from margin.pipeline.handler import Pipeline
from margin.routing.policies.features import features_of
from margin.types import ChatRequest, Principal

RULES = """
  - name: auto
    aliases: [smart]
    tiers:
      - {name: small, deployments: [small, small-b]}
      - {name: mid, deployments: [mid]}
      - {name: big, deployments: [big]}
    fallbacks: [plain]
    routing:
      default_tier: mid
      rules:
        - {name: batch-cheap, when: {endpoint_class: [batch]}, tier: small}
        - {name: tools, when: {tools: true}, tier: big}
        - {name: json-floor, when: {json_mode: true}, min_tier: mid}
        - {name: code, when: {task: [code, math]}, tier: big}
        - {name: long, when: {min_context_tokens: 500}, tier: big}
        - {name: not-english, when: {language: [es, fr, de, zh, ja]}, tier: big}
        - {name: finance, when: {team: [finance]}, max_tier: mid}
        - {name: short, when: {max_prompt_tokens: 12}, tier: small}
"""


@pytest.fixture
def pipeline(tmp_path: Path) -> Pipeline:
    return build(tmp_path, RULES)[0]


def decide(
    pipeline: Pipeline, request: ChatRequest, principal: Principal | None = None, **hints: str
) -> tuple[str, str]:
    decision = pipeline.router.decide(context(principal, **hints), request)
    assert decision.tier is not None
    return decision.tier, decision.reason


@pytest.mark.parametrize(
    ("request_", "tier", "reason"),
    [
        (chat("hi there"), "small", "rule=short"),
        (chat("please summarise the following memo for the board in plain words"), "mid", ""),
        (chat("x", tools=[{"type": "function", "function": {"name": "f"}}]), "big", "rule=tools"),
        (chat("x", metadata={"task": "code"}), "big", "rule=code"),
        (
            chat("¿Cuál es la capital de Francia y por qué es tan importante para la historia?"),
            "big",
            "rule=not-english",
        ),
        (chat("word " * 600), "big", "rule=long"),
        (chat("hi", response_format={"type": "json_object"}), "mid", "rule=short;rules=json-floor"),
    ],
)
def test_rules(pipeline: Pipeline, request_: ChatRequest, tier: str, reason: str) -> None:
    assert decide(pipeline, request_) == (tier, reason)


def test_principal_rules(pipeline: Pipeline) -> None:
    assert decide(pipeline, chat("x", metadata={"task": "code"}), Principal(team="finance"))[0] == "mid"
    assert decide(pipeline, chat("x", tools=[{"type": "function"}]), Principal(endpoint_class="batch"))[0] == "small"


def test_pin_and_cap_from_headers_or_metadata(pipeline: Pipeline) -> None:
    long_ = "please summarise the following memo for the board in plain words"
    assert decide(pipeline, chat(long_), pin="big") == ("big", "pin=big")
    assert decide(pipeline, chat(long_, metadata={"margin_tier": "0"}))[0] == "small"
    assert decide(pipeline, chat("x", metadata={"task": "code"}), cap="mid")[0] == "mid"
    assert decide(pipeline, chat(long_, metadata={"margin_max_tier": "small"}))[0] == "small"
    assert decide(pipeline, chat(long_), pin="big", cap="small")[0] == "small"  # a cap bounds a pin too
    with pytest.raises(errors.InvalidRequest, match="unknown tier 'gold'"):
        decide(pipeline, chat(long_), pin="gold")


def test_overflow_route_runs_up_to_the_cap_then_fallbacks(pipeline: Pipeline) -> None:
    decision = pipeline.router.decide(context(), chat("hi there"))
    assert decision.deployments == ("small", "small-b", "mid", "big")  # plain's deployment is big already
    capped = pipeline.router.decide(context(cap="mid"), chat("hi there"))
    assert capped.deployments == ("small", "small-b", "mid")  # the cap holds for fallback groups too
    pinned = pipeline.router.decide(context(pin="small"), chat("hi there"))
    assert pinned.deployments == ("small", "small-b") and pinned.policy == "pin"
    assert decision.premium == "big" and decision.tier_of("small-b") == "small"


def test_auto_and_aliases_resolve_to_the_tiered_group(pipeline: Pipeline) -> None:
    for model in ("margin/auto", "smart", "auto"):
        assert pipeline.router.decide(context(), chat("hi", model=model)).model_group == "auto"
    static = pipeline.router.decide(context(), chat("hi", model="plain"))
    assert static.policy == "static" and static.tier is None


def test_features_of_a_chat_request() -> None:
    request = ChatRequest(
        model="auto",
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "first"}]},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "what is the second question"},
        ],
        params={"response_format": {"type": "json_schema"}, "metadata": {"task": "qa"}},
    )
    features = features_of(request, "chat", Principal())
    assert features.last_user == "what is the second question" and features.system == "be brief"
    assert features.json_mode and not features.tools and features.task == "qa"
    assert features.text_for("system_and_last_user") == "be brief\n\nwhat is the second question"
    assert features.prompt_tokens == 7 and features.language() == "en"


def test_route_stage_is_fast(pipeline: Pipeline) -> None:
    import time

    request = chat("Quelle est la capitale de la France et pourquoi est-elle importante? " * 20)
    ctx = context()
    timings = []
    for _ in range(200):
        started = time.perf_counter()
        pipeline.router.decide(ctx, request)
        timings.append(time.perf_counter() - started)
    timings.sort()
    assert timings[100] < 0.002  # p50 well under the 5 ms budget (rules only; see test_policy_learned)


BY_CLASS = """
  - name: auto
    tiers:
      - {name: small, deployments: [small]}
      - {name: big, deployments: [big]}
    routing:
      default_tier: big
      endpoint_classes:
        batch: {cascade: {checks: [format]}}
"""


def test_an_endpoint_class_gets_its_own_policy(tmp_path: Path) -> None:
    pipeline = build(tmp_path, BY_CLASS)[0]
    interactive = pipeline.router.decide(context(), chat("anything at all"))
    batch = pipeline.router.decide(context(Principal(endpoint_class="batch")), chat("anything at all"))
    assert (interactive.tier, interactive.policy, interactive.escalation) == ("big", "default", ())
    assert (batch.tier, batch.policy, [s.name for s in batch.escalation]) == ("small", "cascade", ["big"])


def test_a_pinned_or_capped_route_never_shares_a_cache_entry_with_the_default_route(pipeline: Pipeline) -> None:
    """Pins and caps arrive as headers, outside the body the cache key hashes; they still change the
    key, because the key names the deployments the route may use (a tier-1 answer is never served
    to a request pinned to tier 3, nor the reverse)."""
    from margin.caching.keys import exact_key, model_identity

    request = chat("hi there", temperature=0)

    def key(**hints: str) -> str:
        decision = pipeline.router.decide(context(**hints), request)
        return exact_key(request, tenant="t", model=model_identity(decision, request.model)).value

    default, pinned, capped = key(), key(pin="big"), key(cap="small")
    assert len({default, pinned, capped}) == 3  # capped: starts at `small` too but may not escalate
    assert key(pin="big") == pinned and key() == default
