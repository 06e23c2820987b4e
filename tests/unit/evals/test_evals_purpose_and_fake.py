"""What the gateway and the fake upstream add for evals: `x-margin-purpose: eval`, and `wrong=P`."""

from __future__ import annotations

import pytest

from margin.errors import InvalidRequest
from margin.identity.principals import for_purpose
from margin.providers.fake import engine
from margin.providers.fake.faults import Fault
from margin.types import Principal


def test_the_eval_purpose_adds_the_tag_and_lowers_the_class() -> None:
    key = Principal(key_id="k1", tags=("team:search",), endpoint_class="interactive", allowed_models=("chat",))
    evaluated = for_purpose(key, "eval")
    assert evaluated.tags == ("team:search", "eval") and evaluated.endpoint_class == "batch"
    assert evaluated.key_id == "k1" and evaluated.allowed_models == ("chat",)  # the key's limits still apply
    assert for_purpose(evaluated, "EVAL").tags == ("team:search", "eval")  # never twice
    assert for_purpose(key, None) is key


def test_an_unknown_purpose_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="x-margin-purpose 'free-credits' is not known") as caught:
        for_purpose(Principal(), "free-credits")
    assert caught.value.status == 400 and caught.value.param == "x-margin-purpose"


def test_wrong_answers_are_a_deterministic_share_of_prompts() -> None:
    prompts = [f"question {i}" for i in range(4000)]
    spoiled = [p for p in prompts if engine.answered_wrongly(p, 0.2)]
    assert 0.18 < len(spoiled) / len(prompts) < 0.22
    assert spoiled == [p for p in prompts if engine.answered_wrongly(p, 0.2)]  # the same every time
    assert set(spoiled) <= {p for p in prompts if engine.answered_wrongly(p, 0.5)}  # a larger share adds prompts
    assert not any(engine.answered_wrongly(p, 0.0) for p in prompts)


def test_the_fake_answers_the_wrong_share_with_a_wrong_answer() -> None:
    behaviour = engine.FakeBehaviour(wrong=1.0)
    messages = [{"role": "user", "content": "What is 2 + 2?"}]
    assert engine.answer_for(messages, behaviour, {}) == engine.WRONG_ANSWER
    assert engine.answer_for(messages, engine.FakeBehaviour(), {}) == "What is 2 + 2?"


def test_the_wrong_fault_parses_and_checks_its_share() -> None:
    assert Fault.parse("wrong=0.25").wrong == 0.25
    with pytest.raises(ValueError, match="between 0 and 1"):
        Fault.parse("wrong=1.5")
