"""A deployment's number is its `cost_rank`; `tier` (its name before) is still accepted for one
release, with one logged warning per config load. "Tier" now means only a tiered group's named tiers."""

from __future__ import annotations

import logging

import pytest
from pydantic import ValidationError

from margin.config import parse_config
from margin.config.model import MarginConfig
from margin.errors import ConfigError
from margin.identity.key_spec import KeySpec
from margin.ledger.report import report_dimension

CONFIG = """
deployments:
  - {name: cheap, provider: fake, model: m, RANK_KEY: 1}
  - {name: dear, provider: fake, model: m, RANK_KEY: 3}
models:
  - name: auto
    tiers:
      - {name: local, deployments: [cheap]}
      - {name: premium, deployments: [dear]}
"""


def test_cost_rank_is_the_deployment_number_and_loads_quietly(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="margin.config"):
        config = parse_config(CONFIG.replace("RANK_KEY", "cost_rank"), source="m.yaml")
    assert [d.cost_rank for d in config.deployments] == [1, 3]
    assert [t.name for t in config.models[0].tiers] == ["local", "premium"]
    assert caplog.records == []


def test_the_old_tier_key_still_loads_with_one_warning_naming_each_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="margin.config"):
        config = parse_config(CONFIG.replace("RANK_KEY", "tier"), source="m.yaml")
    assert [d.cost_rank for d in config.deployments] == [1, 3]
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert "m.yaml:3: deployments.0.tier (now cost_rank)" in message
    assert "m.yaml:4: deployments.1.tier (now cost_rank)" in message


def test_both_spellings_at_once_is_an_error() -> None:
    both = CONFIG.replace("RANK_KEY: 1}", "cost_rank: 1, tier: 2}").replace("RANK_KEY", "cost_rank")
    with pytest.raises(ConfigError, match="not both"):
        parse_config(both)


def test_a_bad_old_spelling_names_the_key_the_user_wrote() -> None:
    with pytest.raises(ConfigError, match=r"m.yaml:3: deployments\.0\.tier"):
        parse_config(CONFIG.replace("RANK_KEY: 1", "tier: 12").replace("RANK_KEY", "cost_rank"), source="m.yaml")


def test_the_schema_and_the_resolved_config_say_cost_rank() -> None:
    fields = MarginConfig.model_json_schema()["$defs"]["DeploymentConfig"]["properties"]
    assert "cost_rank" in fields and "tier" not in fields
    config = parse_config(CONFIG.replace("RANK_KEY", "tier"))
    assert "cost_rank" in config.deployments[0].model_dump() and "tier" not in config.deployments[0].model_dump()


def test_keys_take_allowed_cost_ranks_and_the_old_allowed_tiers(caplog: pytest.LogCaptureFixture) -> None:
    assert KeySpec.model_validate({"allowed_cost_ranks": [1, 2]}).allowed_cost_ranks == [1, 2]
    with caplog.at_level(logging.WARNING, logger="margin.identity"):
        assert KeySpec.model_validate({"allowed_tiers": [1]}).allowed_cost_ranks == [1]
    assert any("allowed_tiers is deprecated" in r.getMessage() for r in caplog.records)
    with pytest.raises(ValidationError, match="not both"):
        KeySpec.model_validate({"allowed_tiers": [1], "allowed_cost_ranks": [2]})


def test_the_report_dimension_tier_is_the_old_name_of_cost_rank() -> None:
    assert report_dimension("cost_rank") == "cost_rank"
    assert report_dimension("tier") == "cost_rank"
    with pytest.raises(ValueError, match="cannot group by"):
        report_dimension("rank")
