"""The exact key: everything that shapes the answer is in it, the tenant always partitions it."""

from __future__ import annotations

import pytest

from margin.caching.directives import CacheDirectives
from margin.caching.keys import (
    exact_key,
    has_remote_media,
    is_deterministic,
    last_user_text,
    model_identity,
    semantic_partition,
    tenant_of,
)
from margin.types import ChatRequest, Principal, RouteDecision

TOOLS = [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]


def req(messages: list[dict[str, object]] | None = None, **params: object) -> ChatRequest:
    params.setdefault("temperature", 0)
    return ChatRequest(model="chat", messages=messages or [{"role": "user", "content": "hi"}], params=params)


def key(r: ChatRequest, tenant: str = "key:o/k", model: str = "chat@primary") -> str:
    return exact_key(r, tenant=tenant, model=model).value


BASE = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "What is 2+2?"}]


@pytest.mark.parametrize(
    "variant",
    [
        req([{"role": "system", "content": "Be verbose."}, BASE[1]]),  # system prompt
        req([BASE[1]]),  # no system prompt
        req(BASE, tools=TOOLS),  # tool definitions
        req(BASE, tools=TOOLS, tool_choice="none"),
        req(BASE, temperature=0.2),  # sampling parameters
        req(BASE, seed=1),
        req(BASE, max_tokens=5),
        req(BASE, top_p=0.5),
        req(BASE, response_format={"type": "json_object"}),  # response format
        req(BASE, n=2),
        req(BASE, logprobs=True),
        req(BASE, user="end-user-2"),
        req([*BASE[:1], {"role": "user", "content": "What is 2+2? "}]),
        req([{"role": "user", "content": "Be terse."}, BASE[1]]),  # same text, other role
        req([*BASE, {"role": "assistant", "content": "4"}, {"role": "user", "content": "What is 2+2?"}]),
    ],
)
def test_anything_that_shapes_the_answer_changes_the_key(variant: ChatRequest) -> None:
    assert key(variant) != key(req(BASE))


def test_model_and_tenant_change_the_key_and_its_readable_prefix() -> None:
    base = key(req(BASE))
    assert key(req(BASE), model="chat@other") != base
    assert key(req(BASE), tenant="key:o/k2") != base
    assert base.startswith("key:o/k|chat@primary|")


def test_equivalent_spellings_share_a_key() -> None:
    assert key(req(BASE, temperature=0)) == key(req(BASE, temperature=0.0))
    assert key(req(BASE, stop=None)) == key(req(BASE))
    assert key(req(BASE, metadata={"cache": "no-store"})) == key(req(BASE))
    assert key(req(BASE, metadata={"cache": "x", "app": "a"})) != key(req(BASE, metadata={"app": "b"}))
    assert key(req(BASE, temperature=0, seed=3)) == key(req(BASE, seed=3, temperature=0))


def test_completion_and_chat_never_share() -> None:
    chat = req(BASE)
    legacy = ChatRequest(model="chat", messages=BASE, params={"temperature": 0}, kind="completion")
    assert key(chat) != key(legacy)


@pytest.mark.parametrize(
    ("scope", "same", "different"),
    [
        ("key", Principal(key_id="k1", org="o", team="t2"), Principal(key_id="k2", org="o", team="t")),
        ("team", Principal(key_id="k2", org="o", team="t"), Principal(key_id="k1", org="o", team="t2")),
        ("org", Principal(key_id="k2", org="o", team="t2"), Principal(key_id="k1", org="o2", team="t")),
    ],
)
def test_tenant_scopes(scope: str, same: Principal, different: Principal) -> None:
    base = Principal(key_id="k1", org="o", team="t")
    assert tenant_of(base, scope) == tenant_of(same, scope)  # type: ignore[arg-type]
    assert tenant_of(base, scope) != tenant_of(different, scope)  # type: ignore[arg-type]


def test_same_team_name_in_two_orgs_is_two_tenants() -> None:
    assert tenant_of(Principal(org="a", team="x"), "team") != tenant_of(Principal(org="b", team="x"), "team")
    assert tenant_of(Principal(org="a", key_id="k"), "key") != tenant_of(Principal(org="b", key_id="k"), "key")


@pytest.mark.parametrize(
    ("first", "second", "scope"),
    [
        (Principal(org="a/b", team="c"), Principal(org="a", team="b/c"), "team"),
        (Principal(org="a/b", key_id="c"), Principal(org="a", key_id="b/c"), "key"),
        (Principal(org="a|b", team="c"), Principal(org="a", team="b|c"), "team"),
    ],
)
def test_separators_inside_names_never_join_two_tenants(first: Principal, second: Principal, scope: str) -> None:
    """Issue 16: `team:a/b/c` was both org a/b + team c and org a + team b/c."""
    assert tenant_of(first, scope) != tenant_of(second, scope)  # type: ignore[arg-type]
    assert "|" not in tenant_of(first, scope) + tenant_of(second, scope)  # type: ignore[arg-type]


def test_plain_names_keep_their_readable_tenant() -> None:
    """Names of letters, digits and -_.~ read as they are (and keep their existing cache keys)."""
    assert tenant_of(Principal(org="acme", team="search-v2"), "team") == "team:acme/search-v2"
    assert tenant_of(Principal(org="a/b", team="c"), "team") == "team:a%2Fb/c"


def test_model_identity_names_the_deployments() -> None:
    decision = RouteDecision(model_group="chat", deployments=("a", "b"))
    assert model_identity(decision, "alias") == "chat@a,b"
    assert model_identity(None, "alias") == "alias"


@pytest.mark.parametrize(
    ("params", "deterministic"),
    [
        ({"temperature": 0}, True),
        ({"temperature": 0.0}, True),
        ({"seed": 7, "temperature": 0.9}, True),
        ({}, False),  # OpenAI's default temperature is 1
        ({"temperature": 0.7}, False),
        ({"temperature": False}, False),
        ({"seed": "7"}, False),
    ],
)
def test_determinism(params: dict[str, object], deterministic: bool) -> None:
    assert is_deterministic(params) is deterministic


def test_remote_media_is_not_cacheable() -> None:
    remote = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/cat.png"}}]}]
    inline = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]}]
    assert has_remote_media(req(remote))
    assert not has_remote_media(req(inline))
    assert not has_remote_media(req(BASE))


def test_semantic_partition_ignores_only_the_last_user_turn() -> None:
    def part(r: ChatRequest) -> str:
        return semantic_partition(r, tenant="key:o/k", model="m")

    reworded = req([BASE[0], {"role": "user", "content": "2+2 equals what?"}])
    assert part(reworded) == part(req(BASE))
    assert part(req([{"role": "system", "content": "Other"}, BASE[1]])) != part(req(BASE))
    assert part(req(BASE, temperature=0.5)) != part(req(BASE))
    assert part(req(BASE, tools=TOOLS)) != part(req(BASE))
    assert semantic_partition(req(BASE), tenant="key:o/k2", model="m") != part(req(BASE))


def test_last_user_text() -> None:
    assert last_user_text(req(BASE)) == "What is 2+2?"
    parts = [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]
    assert last_user_text(req(parts)) == "a b"
    assert last_user_text(req([*BASE, {"role": "assistant", "content": "4"}])) is None
    assert last_user_text(req([{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}])) is None


def test_directives() -> None:
    assert CacheDirectives.parse("no-store") == CacheDirectives(no_store=True)
    assert CacheDirectives.parse("No-Cache, max-age=60") == CacheDirectives(no_cache=True, max_age_s=60.0)
    assert CacheDirectives.parse("cache").opt_in
    assert CacheDirectives.parse("max-age=abc").max_age_s is None
    assert CacheDirectives.parse(None, "").__eq__(CacheDirectives())
    from_body = CacheDirectives.of_request({"metadata": {"cache": "no-semantic"}}, None)
    assert from_body.no_semantic
    both = CacheDirectives.of_request({"metadata": {"cache": "no-store"}}, "opt-in")
    assert both.no_store and both.opt_in
