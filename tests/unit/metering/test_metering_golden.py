"""Golden tests: recorded usage payloads, each priced to a hand-computed exact amount.

Each fixture in golden/ holds a payload in a provider's documented shape, the dialect that reads
it, the model (resolved in the shipped catalog, or priced by a config-style `override` for
self-hosted deployments), the expected disjoint usage and the expected cost per bucket, computed
by hand from the catalog's per-million prices.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from margin.metering import (
    PriceCatalog,
    UnknownPricePolicy,
    anthropic_cache_write_1h,
    cost_of,
    load_builtin_catalog,
    usage_from_payload,
)
from margin.types import COST_BUCKETS, Usage

GOLDEN_DIR = Path(__file__).parent / "golden"
GOLDEN = sorted(GOLDEN_DIR.glob("*.json"))


def _load(path: Path) -> dict[str, Any]:
    fixture: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return fixture


def _payload(fixture: dict[str, Any]) -> Any:
    payload = fixture["payload"]
    for key in fixture.get("payload_path", []):
        payload = payload[key]
    return payload


@pytest.fixture(scope="module")
def builtin() -> PriceCatalog:
    return load_builtin_catalog()


def test_golden_set_is_large_and_covers_the_required_providers() -> None:
    fixtures = [_load(path) for path in GOLDEN]
    dialects = {fixture["dialect"] for fixture in fixtures}
    assert len(fixtures) >= 30
    assert {"openai", "anthropic", "anthropic_stream", "vllm", "llamacpp"} <= dialects
    assert any(fixture["expected_cost"].get("long_context") for fixture in fixtures)
    assert any(fixture["expected_cost"].get("batch") for fixture in fixtures)
    assert any(fixture["expected_usage"].get("output_reasoning") for fixture in fixtures)
    assert any(fixture["expected_usage"].get("input_cache_write") for fixture in fixtures)
    assert any(fixture["expected_usage"].get("input_cache_read") for fixture in fixtures)


@pytest.mark.parametrize("path", GOLDEN, ids=lambda path: path.stem)
def test_golden_payload_is_priced_exactly(path: Path, builtin: PriceCatalog) -> None:
    fixture = _load(path)
    payload = _payload(fixture)

    usage = usage_from_payload(payload, fixture["dialect"])
    assert usage == Usage(**fixture["expected_usage"])

    catalog = builtin.with_overrides({fixture["model"]: fixture["override"]}) if "override" in fixture else builtin
    one_hour = anthropic_cache_write_1h(payload["usage"]) if fixture.get("cache_write_1h_from_payload") else 0
    cost = cost_of(
        catalog,
        fixture["model"],
        usage,
        provider=fixture.get("provider"),
        policy=UnknownPricePolicy.BLOCK,  # a golden model must have a price
        batch=fixture.get("batch", False),
        cache_write_1h_tokens=one_hour,
    )

    expected = fixture["expected_cost"]
    assert cost.total.usd == Decimal(expected["total"])
    assert cost.buckets() == {name: Decimal(expected["buckets"].get(name, "0")) for name in COST_BUCKETS}
    assert cost.long_context is expected.get("long_context", False)
    assert cost.batch is expected.get("batch", False)
    assert cost.basis == "catalog"
    assert cost.price_version  # every cost names the price version it used


def test_streamed_and_unstreamed_anthropic_usage_match() -> None:
    streamed = _load(GOLDEN_DIR / "anthropic_stream_cache_read_sonnet_3_7.json")
    events = streamed["payload"]
    final_usage = {
        "input_tokens": 12,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 2048,
        "output_tokens": 503,
    }
    assert usage_from_payload(events, "anthropic_stream") == usage_from_payload({"usage": final_usage}, "anthropic")
