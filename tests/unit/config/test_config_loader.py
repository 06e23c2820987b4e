from __future__ import annotations

import pytest

from margin.config import embedded_default, parse_config
from margin.config.render import masked_config
from margin.errors import ConfigError

VALID = """
deployments:
  - name: up
    provider: openai_compat
    model: m
    base_url: http://127.0.0.1:9/v1
    api_key: env:SECRET_KEY_VAR
    headers: {Authorization: Bearer sk-live-abc}
models:
  - {name: g, deployments: [up]}
"""


def test_unknown_key_names_key_and_line() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(VALID.replace("    model: m\n", "    model: m\n    modle: typo\n"), source="x.yaml")
    assert "x.yaml:6: deployments.0.modle: Extra inputs are not permitted" in info.value.message


def test_unknown_deployment_reference() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(VALID.replace("deployments: [up]", "deployments: [down]"))
    assert "unknown deployments: down" in info.value.message


def test_openai_compat_needs_base_url() -> None:
    with pytest.raises(ConfigError, match="needs base_url"):
        parse_config("deployments: [{name: a, provider: openai_compat, model: m}]")


def test_invalid_yaml_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_config("deployments: [")


def test_secrets_resolve_from_env_and_are_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRET_KEY_VAR", "sk-very-secret")
    config = parse_config(VALID)
    key = config.deployments[0].api_key
    assert key is not None and key.resolve() == "sk-very-secret"
    rendered = str(masked_config(config))
    assert "sk-very-secret" not in rendered and "sk-live-abc" not in rendered
    assert "env:SECRET_KEY_VAR" in rendered


def test_embedded_default_is_offline_without_keys() -> None:
    config = embedded_default({}, embeddings=False)
    assert [d.provider for d in config.deployments] == ["local"]
    with_extra = embedded_default({}, embeddings=True)
    assert [d.provider for d in with_extra.deployments] == ["local", "local_embed"]


def test_embedded_default_adds_api_tiers_with_keys() -> None:
    config = embedded_default({"OPENAI_API_KEY": "x", "ANTHROPIC_API_KEY": "y"}, embeddings=False)
    providers = {d.provider for d in config.deployments}
    assert providers == {"local", "openai_compat", "anthropic"}
    assert {"gpt-4o-mini", "claude-sonnet-4-5"} <= {m.name for m in config.models}


def test_every_secret_in_every_section_is_masked() -> None:
    config = parse_config(
        VALID
        + """redis: {url: "redis://:hunter2-redis@127.0.0.1:6379/0"}
limits: {alerts: {webhook_url: "https://hooks.example.invalid/T0/secret-hook-token"}}
"""
    )
    rendered = str(masked_config(config))
    assert "hunter2-redis" not in rendered and "secret-hook-token" not in rendered
