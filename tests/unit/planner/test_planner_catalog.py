"""The packaged catalog: every figure cites a source, and carried-over figures match shared/ reference data."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from margin.metering.catalog import load_builtin_catalog
from margin.planner import Catalog, load_catalog
from margin.planner.amounts import to_decimal
from margin.planner.api_prices import PRICE_FIELDS
from margin.planner.catalog import OVERRIDE_SOURCE, default_catalog_data

REFERENCE = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "costmodel" / "reference.yaml"


@pytest.fixture(scope="module")
def reference() -> dict[str, object]:
    if not REFERENCE.is_file():
        pytest.skip("shared/ reference data not present")
    data = yaml.safe_load(REFERENCE.read_text())
    assert isinstance(data, dict)
    return data


def test_every_source_is_cited_with_a_date(catalog: Catalog) -> None:
    assert all(s.date for s in catalog.sources.values())
    assert all(o.source in catalog.sources for g in catalog.gpus.values() for o in g.offers.values())


def test_api_prices_come_from_the_metering_catalog(catalog: Catalog) -> None:
    prices = load_builtin_catalog()
    for api_id, api in catalog.apis.items():
        entry = prices.lookup(api.model, api.provider)
        assert entry is not None, api_id
        assert (api.input_usd_per_mtok, api.output_usd_per_mtok) == (entry.prices.input, entry.prices.output)
        assert api.cached_input_usd_per_mtok == entry.prices.cache_read
        batch = entry.batch_multiplier
        assert api.batch_input_usd_per_mtok == (None if batch is None else entry.prices.input * batch)
        assert api.price_version == prices.version and api.price_source == entry.source


def test_the_planner_catalog_states_no_token_price() -> None:
    apis = default_catalog_data()["apis"]
    assert apis and not [k for k, entry in apis.items() if set(entry) & set(PRICE_FIELDS)]
    with pytest.raises(ValueError, match="live in the metering price catalog"):
        priced = {**apis, "openai/gpt-4.1": {**apis["openai/gpt-4.1"], "input_usd_per_mtok": "1"}}
        load_catalog(base={**default_catalog_data(), "apis": priced})


def test_an_api_without_a_metering_price_is_an_error_not_zero() -> None:
    data = default_catalog_data()
    data["apis"]["acme/unpriced"] = {**data["apis"]["openai/gpt-4.1"], "provider": "acme", "model": "acme-1"}
    with pytest.raises(ValueError, match=r"no price for planner APIs: acme/unpriced \(acme-1\)"):
        load_catalog(base=data)


def test_metering_prices_agree_with_reference_or_say_why(catalog: Catalog, reference: dict[str, object]) -> None:
    """The planner's APIs were seeded from the reference; metering's entry may differ only where its notes
    name the reference's figure (e.g. Together's Llama 3.3 70B: 0.88 on the vendor page, 1.04 in LiteLLM)."""
    by_key = {a["litellm_key"]: a for a in reference["api_prices"]}  # type: ignore[index, union-attr]
    assert len(catalog.apis) == len(by_key)
    prices = load_builtin_catalog()
    for api in catalog.apis.values():
        ref = by_key[api.reference_key]
        entry = prices.lookup(api.model, api.provider)
        assert entry is not None and api.source == ref["source"] and api.date == ref["date"]
        expected = (to_decimal(ref["input_usd_per_mtok"]), to_decimal(ref["output_usd_per_mtok"]))
        if (api.input_usd_per_mtok, api.output_usd_per_mtok) != expected:
            assert str(ref["input_usd_per_mtok"]) in entry.notes, api.reference_key
        elif "cached_input_usd_per_mtok" in ref:
            assert api.cached_input_usd_per_mtok == to_decimal(ref["cached_input_usd_per_mtok"])


def test_gpu_offers_match_reference(catalog: Catalog, reference: dict[str, object]) -> None:
    rows = {}
    for gpu in reference["gpus"]:  # type: ignore[union-attr]
        for offer in gpu["offers"]:
            rows[(offer["provider"], offer["instance"].split(" ")[0], offer["region"])] = offer
    matched = 0
    for gpu in catalog.gpus.values():
        for offer in gpu.offers.values():
            ref = rows.get((offer.provider, offer.instance.split(" ")[0], offer.region))
            if ref is None:
                continue
            matched += 1
            assert offer.on_demand_usd_hr == to_decimal(ref["on_demand_usd_hr"])
            spot = ref.get("spot_usd_hr")
            expected = [] if spot is None else spot if isinstance(spot, list) else [spot]
            assert list(offer.spot_usd_hr_samples) == [to_decimal(s) for s in expected]
            assert offer.gpus_per_instance == ref["gpus"]
    assert matched >= 20


def test_model_specs_match_reference(catalog: Catalog, reference: dict[str, object]) -> None:
    models = reference["models"]  # type: ignore[index]
    for spec in catalog.models.values():
        ref = models[spec.name]  # type: ignore[index]
        assert (spec.params_b, spec.layers, spec.kv_heads, spec.head_dim) == (
            ref["params_b"],
            ref["layers"],
            ref["kv_heads"],
            ref["head_dim"],
        )
        assert 2 * spec.layers * spec.kv_heads * spec.head_dim * 2 == ref["kv_bytes_per_token_fp16"]
        assert spec.weights_gb["fp16"] == ref["weights_gb_fp16"]


def test_override_replaces_figure_and_marks_source() -> None:
    catalog = load_catalog(
        {
            "assumptions": {"target_utilization": 0.6},
            "gpus": {"a10g": {"offers": {"aws-g5.xlarge-us-east-1": {"on_demand_usd_hr": "0.90"}}}},
        }
    )
    assert catalog.assumptions.target_utilization.value == 0.6
    assert catalog.assumptions.target_utilization.source == OVERRIDE_SOURCE
    offer = catalog.gpus["a10g"].offers["aws-g5.xlarge-us-east-1"]
    assert offer.on_demand_usd_hr == Decimal("0.90") and offer.source == OVERRIDE_SOURCE
    untouched = catalog.gpus["a10g"].offers["aws-g5.xlarge-us-east-2"]
    assert untouched.source == "skypilot_aws_v8"


def test_unknown_source_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown sources"):
        load_catalog(
            {
                "apis": {
                    "x/y": {
                        "provider": "x",
                        "model": "y",
                        "input_usd_per_mtok": 1,
                        "output_usd_per_mtok": 1,
                        "max_input_tokens": 1000,
                        "source": "nowhere",
                        "date": "2026",
                    }
                }
            }
        )
