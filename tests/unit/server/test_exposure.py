"""`margin serve` on a non-loopback address needs an admin key and required client keys (issue 16,
item 1); on loopback it needs neither."""

from __future__ import annotations

import pytest

from margin.config.model import MarginConfig
from margin.server.exposure import binds_loopback_only, exposure_problems, refusal_message


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "LOCALHOST", "::1", "[::1]"])
def test_loopback_addresses_need_nothing(host: str) -> None:
    assert binds_loopback_only(host)
    assert exposure_problems(host, MarginConfig.model_validate({})) == []


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "gateway.internal", ""])
def test_anything_else_is_exposed(host: str) -> None:
    assert not binds_loopback_only(host)


def test_an_open_gateway_is_refused_with_what_to_set() -> None:
    problems = exposure_problems("0.0.0.0", MarginConfig.model_validate({}))
    message = refusal_message("0.0.0.0", problems)
    assert len(problems) == 2
    assert "server.admin_key" in message and "auth: required" in message and "allow_unauthenticated" in message


def test_an_admin_key_alone_is_not_enough_unless_unauthenticated_is_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_ADMIN", "a-secret")
    keyed = {"server": {"admin_key": "env:TEST_ADMIN"}}
    assert [p for p in exposure_problems("0.0.0.0", MarginConfig.model_validate(keyed)) if "auth: required" in p]
    allowed = {"server": {"admin_key": "env:TEST_ADMIN", "allow_unauthenticated": True}}
    assert exposure_problems("0.0.0.0", MarginConfig.model_validate(allowed)) == []
    required = {"server": {"admin_key": "env:TEST_ADMIN"}, "auth": "required"}
    assert exposure_problems("0.0.0.0", MarginConfig.model_validate(required)) == []


def test_an_admin_key_that_names_an_unset_variable_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_ADMIN", raising=False)
    config = MarginConfig.model_validate({"server": {"admin_key": "env:TEST_ADMIN"}, "auth": "required"})
    problems = exposure_problems("0.0.0.0", config)
    assert problems == ["`server.admin_key` is env:TEST_ADMIN, which is unset or empty: export it"]


def test_allow_unauthenticated_never_replaces_the_admin_key() -> None:
    config = MarginConfig.model_validate({"server": {"allow_unauthenticated": True}})
    assert [p for p in exposure_problems("0.0.0.0", config) if "admin_key" in p]
