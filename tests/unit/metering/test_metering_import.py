"""`margin prices import` (LiteLLM format, 10x guard, diff summary) and `margin prices show`."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from margin.cli.prices import prices
from margin.metering import load_builtin_catalog, load_catalog
from margin.metering.catalog import load_catalog_file
from margin.metering.litellm_import import convert_entry, plan_import
from margin.metering.price_model import ModelPrice

D = Decimal

LITELLM: dict[str, Any] = {
    "sample_spec": {
        "input_cost_per_token": 0.0,
        "output_cost_per_token": 0.0,
        "litellm_provider": "one of ...",
    },
    "gpt-4o": {  # unchanged against the builtin entry
        "input_cost_per_token": 2.5e-06,
        "output_cost_per_token": 1e-05,
        "cache_read_input_token_cost": 1.25e-06,
        "input_cost_per_token_batches": 1.25e-06,
        "output_cost_per_token_batches": 5e-06,
        "litellm_provider": "openai",
        "mode": "chat",
    },
    "gpt-4o-mini": {  # a modest change: 0.15 -> 0.165
        "input_cost_per_token": 1.65e-07,
        "output_cost_per_token": 6e-07,
        "cache_read_input_token_cost": 7.5e-08,
        "input_cost_per_token_batches": 7.5e-08,
        "output_cost_per_token_batches": 3e-07,
        "litellm_provider": "openai",
        "mode": "chat",
    },
    "claude-sonnet-4-5-20250929": {
        "cache_creation_input_token_cost": 3.75e-06,
        "cache_creation_input_token_cost_above_1hr": 6e-06,
        "cache_read_input_token_cost": 3e-07,
        "input_cost_per_token": 3e-06,
        "input_cost_per_token_above_200k_tokens": 6e-06,
        "output_cost_per_token_above_200k_tokens": 2.25e-05,
        "cache_creation_input_token_cost_above_200k_tokens": 7.5e-06,
        "cache_read_input_token_cost_above_200k_tokens": 6e-07,
        "cache_creation_input_token_cost_above_1hr_above_200k_tokens": 1.2e-05,
        "litellm_provider": "anthropic",
        "mode": "chat",
        "output_cost_per_token": 1.5e-05,
        "input_cost_per_token_above_200k_tokens_priority": 9e-06,
    },
    "together_ai/new-org/New-Model-7B": {
        "input_cost_per_token": 2e-07,
        "output_cost_per_token": 2e-07,
        "litellm_provider": "together_ai",
        "mode": "chat",
    },
    "text-embedding-3-large": {
        "input_cost_per_token": 1.3e-07,
        "input_cost_per_token_batches": 6.5e-08,
        "litellm_provider": "openai",
        "mode": "embedding",
    },
    "dall-e-3": {"output_cost_per_image": 0.04, "litellm_provider": "openai", "mode": "image_generation"},
    "whisper-1": {
        "input_cost_per_second": 0.0001,
        "litellm_provider": "openai",
        "mode": "audio_transcription",
    },
}


def _write(tmp_path: Path, document: dict[str, Any]) -> Path:
    path = tmp_path / "model_prices_and_context_window.json"
    path.write_text(json.dumps(document))
    return path


def _import(tmp_path: Path, document: dict[str, Any], *extra: str) -> tuple[Result, Path]:
    out = tmp_path / "user" / "prices.yaml"
    result = CliRunner().invoke(prices, ["import", str(_write(tmp_path, document)), "--catalog-out", str(out), *extra])
    return result, out


def _convert(name: str) -> ModelPrice:
    converted = convert_entry(
        name,
        LITELLM[name],
        provider_aliases={"together_ai": "together"},
        today=date(2026, 11, 23),
        version="v",
    )
    assert isinstance(converted, ModelPrice)
    return converted


def test_per_token_floats_become_exact_per_million_decimals() -> None:
    entry = _convert("gpt-4o-mini")
    assert entry.prices.input == D("0.165") and entry.prices.cache_read == D("0.075")
    assert entry.batch_multiplier == D("0.5")
    assert entry.verified_at == date(2026, 11, 23)


def test_tiers_and_one_hour_cache_writes_are_imported() -> None:
    entry = _convert("claude-sonnet-4-5-20250929")
    assert entry.prices.cache_write_1h == D(6)
    (tier,) = entry.long_context  # the _priority variant is not a tier
    assert tier.above_input_tokens == 200_000
    assert (tier.prices.input, tier.prices.output, tier.prices.cache_read) == (D(6), D("22.5"), D("0.6"))
    assert (tier.prices.cache_write, tier.prices.cache_write_1h) == (D("7.5"), D(12))


def test_provider_names_map_and_embeddings_have_zero_output() -> None:
    assert _convert("together_ai/new-org/New-Model-7B").provider == "together"
    embedding = _convert("text-embedding-3-large")
    assert embedding.prices.output == 0 and embedding.prices.input == D("0.13")


def test_plan_classifies_entries() -> None:
    plan = plan_import(LITELLM, load_builtin_catalog(), today=date(2026, 11, 23), version="v")
    assert {"gpt-4o", "text-embedding-3-large", "claude-sonnet-4-5-20250929"} <= set(plan.unchanged)
    assert set(plan.changed) == {"gpt-4o-mini"}
    assert "together_ai/new-org/New-Model-7B" in plan.added
    assert set(plan.skipped) == {"dall-e-3", "whisper-1"}
    assert not plan.refused
    imported = {entry.name: entry for entry in plan.entries}
    assert imported["gpt-4o"].aliases == ("gpt-4o-2024-08-06", "gpt-4o-2024-11-20")  # kept from builtin


def test_fields_litellm_does_not_record_keep_their_current_values() -> None:
    plan = plan_import(LITELLM, load_builtin_catalog(), today=date(2026, 11, 23), version="v")
    imported = {entry.name: entry for entry in plan.entries}
    # LiteLLM records no batch price for Anthropic: the builtin 50% discount is not dropped.
    assert imported["claude-sonnet-4-5-20250929"].batch_multiplier == D("0.5")
    assert "claude-sonnet-4-5-20250929" in plan.unchanged


def test_a_changed_tier_is_reported(tmp_path: Path) -> None:
    entry = {**LITELLM["claude-sonnet-4-5-20250929"], "input_cost_per_token_above_200k_tokens": 7e-06}
    result, _ = _import(tmp_path, {"claude-sonnet-4-5-20250929": entry}, "--dry-run")
    assert result.exit_code == 0
    assert "1 changed" in result.output
    assert "claude-sonnet-4-5-20250929: long-context tiers or batch multiplier" in result.output


def test_import_writes_user_catalog_and_prints_a_diff_summary(tmp_path: Path) -> None:
    result, out = _import(tmp_path, LITELLM)
    assert result.exit_code == 0, result.output
    assert "1 changed" in result.output and "gpt-4o-mini input: 0.15 -> 0.165 (x1.1)" in result.output
    assert "+ together_ai/new-org/New-Model-7B" in result.output
    assert "2 skipped" in result.output

    catalog = load_catalog(user_file=out)
    mini = catalog.lookup("gpt-4o-mini")
    assert mini is not None and mini.prices.input == D("0.165") and mini.origin == "user"
    assert catalog.lookup("together_ai/new-org/New-Model-7B") is not None
    assert catalog.lookup("claude-opus-4-1") is not None  # builtin entries still resolve


@pytest.mark.parametrize(
    ("model", "field", "value"),
    [
        ("gpt-4o", "input_cost_per_token", 2.5e-04),  # 100x up: a slipped decimal point
        ("gpt-4o", "output_cost_per_token", 9e-07),  # 11x down
        ("gpt-4o", "cache_read_input_token_cost", 0.0),  # a price turned into a silent zero
    ],
)
def test_changes_beyond_10x_are_refused_unless_forced(tmp_path: Path, model: str, field: str, value: float) -> None:
    document = {model: {**LITELLM[model], field: value}}
    refused, out = _import(tmp_path, document)
    assert refused.exit_code == 1
    assert "Refused: 1 price change(s) exceed 10x" in refused.output
    assert not out.exists()

    forced, _ = _import(tmp_path, document, "--force")
    assert forced.exit_code == 0, forced.output
    assert out.exists()


def test_exactly_10x_is_allowed(tmp_path: Path) -> None:
    result, out = _import(tmp_path, {"gpt-4o": {**LITELLM["gpt-4o"], "input_cost_per_token": 2.5e-05}})
    assert result.exit_code == 0, result.output
    entry = load_catalog_file(out).lookup("gpt-4o")
    assert entry is not None and entry.prices.input == D(25)


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    result, out = _import(tmp_path, LITELLM, "--dry-run")
    assert result.exit_code == 0 and "Dry run" in result.output
    assert not out.exists()


def test_a_second_import_keeps_earlier_user_entries(tmp_path: Path) -> None:
    first, out = _import(tmp_path, {"together_ai/new-org/New-Model-7B": LITELLM["together_ai/new-org/New-Model-7B"]})
    assert first.exit_code == 0
    second, _ = _import(tmp_path, {"gpt-4o-mini": LITELLM["gpt-4o-mini"]})
    assert second.exit_code == 0
    names = set(load_catalog_file(out).entries)
    assert names == {"together_ai/new-org/New-Model-7B", "gpt-4o-mini"}


@pytest.mark.parametrize("content", ["not json", "[1, 2]"])
def test_unreadable_files_fail_cleanly(tmp_path: Path, content: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    result = CliRunner().invoke(prices, ["import", str(path), "--catalog-out", str(tmp_path / "o.yaml")])
    assert result.exit_code == 1 and "Error" in result.output
    assert not (tmp_path / "o.yaml").exists()


def test_show_prints_prices_source_and_dates(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        prices, ["show", "claude-sonnet-4-5-20250929", "--catalog", str(tmp_path / "none.yaml")]
    )
    assert result.exit_code == 0, result.output
    text = result.output
    assert "claude-sonnet-4-5 (anthropic), matched by alias" in text
    assert "input: $3 / 1M tokens" in text and "cache_write_1h: $6 / 1M tokens" in text
    assert "prompt > 200000 tokens: input $6" in text and "batch: x0.5" in text
    assert "source: https://docs.anthropic.com/en/docs/about-claude/pricing" in text
    assert "effective_from: 2025-09-29" in text and "verified_at: 2026-11-23" in text


def test_show_uses_the_user_catalog_and_provider(tmp_path: Path) -> None:
    _, out = _import(tmp_path, {"gpt-4o-mini": LITELLM["gpt-4o-mini"]})
    mini = CliRunner().invoke(prices, ["show", "gpt-4o-mini", "--catalog", str(out)])
    assert "input: $0.165 / 1M tokens" in mini.output and "(user)" in mini.output
    hosted = CliRunner().invoke(
        prices, ["show", "deepseek-ai/DeepSeek-R1", "--provider", "together", "--catalog", str(out)]
    )
    assert hosted.exit_code == 0 and "output: $7 / 1M tokens" in hosted.output


def test_show_unknown_model_fails(tmp_path: Path) -> None:
    result = CliRunner().invoke(prices, ["show", "no-such-model", "--catalog", str(tmp_path / "none.yaml")])
    assert result.exit_code == 1 and "no price for 'no-such-model'" in result.output
