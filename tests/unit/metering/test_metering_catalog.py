"""The shipped catalog's integrity, lookup rules, user files and config overrides."""

from __future__ import annotations

from decimal import Decimal
from importlib import resources
from pathlib import Path

import pytest
import yaml

from margin.errors import ConfigError
from margin.metering import PriceCatalog, load_builtin_catalog, load_catalog
from margin.metering.catalog import load_catalog_file, write_catalog_file
from margin.metering.price_model import PRICE_FIELDS, ModelPrice


@pytest.fixture(scope="module")
def builtin() -> PriceCatalog:
    return load_builtin_catalog()


def _get(catalog: PriceCatalog, model: str) -> ModelPrice:
    entry = catalog.lookup(model)
    assert entry is not None, model
    return entry


def _raw_catalog() -> dict[str, object]:
    text = resources.files("margin.metering").joinpath("prices.yaml").read_text(encoding="utf-8")
    document: dict[str, object] = yaml.safe_load(text)
    return document


def test_shipped_prices_are_strings_never_floats() -> None:
    models = _raw_catalog()["models"]
    assert isinstance(models, dict)
    for name, entry in models.items():
        for key in PRICE_FIELDS:
            assert entry.get(key) is None or isinstance(entry[key], str), f"{name}.{key} must be a quoted string"
        for tier in entry.get("long_context", []):
            for key in PRICE_FIELDS:
                assert tier.get(key) is None or isinstance(tier[key], str), f"{name} tier {key}"


def test_every_shipped_entry_has_provenance(builtin: PriceCatalog) -> None:
    for entry in builtin.entries.values():
        assert entry.source.startswith("https://"), entry.name
        assert entry.effective_from is not None, entry.name
        assert entry.verified_at is not None or entry.notes, f"{entry.name}: unverified entries must say so"
        assert entry.version == builtin.version == "builtin:2026.11.23"


def test_aliases_are_unique_and_never_shadow_an_entry(builtin: PriceCatalog) -> None:
    seen: set[str] = set()
    for entry in builtin.entries.values():
        for alias in entry.aliases:
            assert alias not in seen, alias
            assert alias not in builtin.entries, alias
            seen.add(alias)


@pytest.mark.parametrize(
    "model",
    [
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-4.1",
        "gpt-4.1-mini",
        "gpt-4.1-nano",
        "o1",
        "o3",
        "o4-mini",
        "gpt-5",
        "claude-3-5-haiku-20241022",
        "claude-3-7-sonnet-20250219",
        "claude-sonnet-4-20250514",
        "claude-sonnet-4-5",
        "claude-opus-4-20250514",
        "claude-opus-4-1",
        "claude-haiku-4-5",
        "gemini-1.5-pro",
        "gemini-1.5-flash",
        "gemini-2.0-flash",
        "gemini-2.5-flash",
        "gemini-2.5-pro",
        "together/meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo",
        "together/meta-llama/Meta-Llama-3.1-70B-Instruct-Turbo",
        "together/meta-llama/Meta-Llama-3.1-405B-Instruct-Turbo",
        "together/meta-llama/Llama-3.3-70B-Instruct-Turbo",
        "together/mistralai/Mixtral-8x7B-Instruct-v0.1",
        "together/Qwen/Qwen2.5-72B-Instruct-Turbo",
        "together/deepseek-ai/DeepSeek-V3",
        "together/deepseek-ai/DeepSeek-R1",
        "groq/llama-3.3-70b-versatile",
        "deepinfra/meta-llama/Llama-3.3-70B-Instruct-Turbo",
        "fireworks/accounts/fireworks/models/llama-v3p1-405b-instruct",
    ],
)
def test_required_models_are_priced(builtin: PriceCatalog, model: str) -> None:
    assert builtin.lookup(model) is not None


def test_lookup_by_exact_alias_and_provider_prefix(builtin: PriceCatalog) -> None:
    exact = builtin.resolve("gpt-4o", provider="together")  # an exact name wins over a provider
    assert exact is not None and exact.matched_by == "exact"
    alias = builtin.resolve("gpt-4o-2024-11-20")
    assert alias is not None and alias.price.name == "gpt-4o" and alias.matched_by == "alias"
    prefixed = builtin.resolve("openai/gpt-4o-mini")
    assert prefixed is not None and prefixed.price.name == "gpt-4o-mini" and prefixed.matched_by == "provider_prefix"
    assert builtin.lookup("anthropic/claude-sonnet-4-5-20250929") is builtin.lookup("claude-sonnet-4-5")
    assert builtin.lookup("gemini/gemini-2.5-pro") is builtin.lookup("gemini-2.5-pro")
    together = builtin.lookup("together_ai/deepseek-ai/DeepSeek-R1")
    assert together is not None and together.name == "together/deepseek-ai/DeepSeek-R1"
    hosted = builtin.lookup("meta-llama/Llama-3.3-70B-Instruct-Turbo", provider="deepinfra")
    assert hosted is not None and hosted.prices.input == Decimal("0.10")


@pytest.mark.parametrize(
    ("model", "provider"),
    [
        ("gpt-4o-2099-01-01", None),  # an unlisted snapshot is not guessed from its family
        ("GPT-4O", None),  # no case folding
        ("meta-llama/Llama-3.3-70B-Instruct-Turbo", None),  # hosted by several providers: which one?
        ("anthropic/gpt-4o", None),  # the prefix must match the entry's provider
        ("unknownprovider/gpt-4o", None),
        ("deepseek-ai/DeepSeek-R1", "groq"),  # not priced on that provider
    ],
)
def test_lookup_never_guesses(builtin: PriceCatalog, model: str, provider: str | None) -> None:
    assert builtin.lookup(model, provider) is None


def test_older_snapshot_keeps_its_own_price(builtin: PriceCatalog) -> None:
    old = builtin.lookup("gpt-4o-2024-05-13")
    assert old is not None and old.prices.input == Decimal("5.00")


def test_override_changes_one_field_and_keeps_the_rest(builtin: PriceCatalog) -> None:
    catalog = builtin.with_overrides({"gpt-4o": {"input": "2.00"}})
    entry = catalog.lookup("gpt-4o")
    assert entry is not None
    assert entry.prices.input == Decimal("2.00")
    assert entry.prices.output == Decimal("10.00")
    assert entry.prices.cache_read == Decimal("1.25")
    assert entry.origin == "config" and entry.version.startswith("config:")
    assert catalog.lookup("gpt-4o-2024-08-06") is entry  # aliases follow the overridden entry
    assert _get(builtin, "gpt-4o").prices.input == Decimal("2.50")  # the original is untouched


def test_override_of_an_alias_overrides_the_entry(builtin: PriceCatalog) -> None:
    catalog = builtin.with_overrides({"claude-haiku-4-5-20251001": {"output": "4"}})
    entry = catalog.lookup("claude-haiku-4-5")
    assert entry is not None and entry.prices.output == Decimal(4)


def test_override_adds_a_new_model_and_accepts_yaml_floats(builtin: PriceCatalog) -> None:
    catalog = builtin.with_overrides({"my-local": {"provider": "self-hosted", "input": 0.1, "output": 0.3}})
    entry = catalog.lookup("my-local")
    assert entry is not None
    assert entry.prices.input == Decimal("0.1") and entry.prices.output == Decimal("0.3")
    assert catalog.version.startswith("builtin:2026.11.23+config:")


@pytest.mark.parametrize(
    "partial",
    [
        {"provider": "x", "input": "1"},  # new model without output
        {"input": "-1", "output": "1"},
        {"input": "abc", "output": "1"},
        {"input": "1", "output": "1", "colour": "blue"},
        {
            "input": "1",
            "output": "1",
            "long_context": [{"above_input_tokens": 0, "input": "1", "output": "1"}],
        },
    ],
)
def test_invalid_override_is_a_config_error(builtin: PriceCatalog, partial: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        builtin.with_overrides({"brand-new-model": partial})


def test_user_file_round_trips_and_layers_over_builtin(tmp_path: Path, builtin: PriceCatalog) -> None:
    path = tmp_path / "prices.yaml"
    changed = builtin.with_overrides({"gpt-4o": {"output": "9.50"}}).lookup("gpt-4o")
    assert changed is not None
    write_catalog_file(path, "user-test", [changed])

    reread = _get(load_catalog_file(path), "gpt-4o")
    assert reread.prices == changed.prices
    assert reread.aliases == changed.aliases and reread.source == changed.source

    catalog = load_catalog(user_file=path, overrides={"o3": {"input": "1.00"}})
    assert _get(catalog, "gpt-4o").prices.output == Decimal("9.50")
    assert _get(catalog, "gpt-4o").origin == "user"
    assert _get(catalog, "o3").prices.input == Decimal("1.00")
    assert catalog.lookup("claude-haiku-4-5") is not None  # builtin entries remain
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_missing_user_file_is_ignored(tmp_path: Path) -> None:
    assert len(load_catalog(user_file=tmp_path / "absent.yaml")) == len(load_builtin_catalog())


@pytest.mark.parametrize(
    "text", ["models: {}", "version: x\nmodels: [1]", ": : :", "version: v\nmodels: {m: {input: '1'}}"]
)
def test_broken_user_file_is_a_config_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError):
        load_catalog_file(path)
