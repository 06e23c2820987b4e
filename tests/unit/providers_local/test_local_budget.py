"""The batched engine's prefill budget (local_budget): fed step timings, the chunk it picks."""

from __future__ import annotations

import pytest

from margin.providers.local_budget import MIN_PREFILL, PrefillBudget, prompt_portion


def test_nothing_decoding_or_no_factor_is_the_whole_chunk() -> None:
    budget = PrefillBudget(256, 2.0)
    budget.observe(7, 0, 0.070)
    assert budget.tokens(0) == 256
    off = PrefillBudget(256, None)
    off.observe(7, 0, 0.070)
    off.observe(7, 10, 0.140)
    assert off.tokens(7) == 256


def test_until_both_costs_are_known_a_decoding_step_carries_the_floor() -> None:
    budget = PrefillBudget(256, 2.0)
    assert budget.tokens(7) == MIN_PREFILL  # nothing measured
    budget.observe(7, 0, 0.070)
    assert budget.tokens(7) == MIN_PREFILL  # decode step known, token time not
    budget.observe(3, 10, 0.5)  # a mixed step of a size never seen decode-only: nearest size used
    assert budget.per_token == pytest.approx((0.5 - 0.070) / 10)


def test_the_chunk_keeps_a_mixed_step_within_the_factor_of_a_decode_step() -> None:
    budget = PrefillBudget(256, 2.0)
    budget.observe(7, 0, 0.070)  # 7 sequences decode in 70 ms
    budget.observe(0, 256, 256 * 0.0065)  # prefill alone: 6.5 ms a prompt token
    assert budget.tokens(7) == 10  # (2 - 1) x 70 ms / 6.5 ms
    three = PrefillBudget(256, 3.0)
    three.observe(7, 0, 0.070)
    three.observe(7, 8, 0.070 + 8 * 0.007)  # marginal time from a mixed step
    assert three.tokens(7) == 16  # 2 x 70 / 7 = 20, but at most double the last (8)
    assert three.tokens(7) == 20


def test_costs_are_learned_as_moving_averages() -> None:
    budget = PrefillBudget(256, 2.0)
    budget.observe(4, 0, 0.040)
    budget.observe(4, 0, 0.080)
    assert budget.decode_step(4) == pytest.approx(0.040 + 0.25 * 0.040)
    budget.observe(4, 10, 0.050 + 10 * 0.004)
    budget.observe(4, 10, 0.050 + 10 * 0.008)
    assert budget.per_token == pytest.approx(0.004 + 0.25 * 0.004)
    assert budget.decode_step(6) == budget.decode_step(4)  # the nearest size measured
    budget.observe(8, 0, 0.1)
    assert budget.decode_step(6) == budget.decode_step(4)  # a tie takes the smaller (cautious)


def test_slow_prompt_tokens_never_stop_a_long_prompt_and_fast_ones_stop_at_the_cap() -> None:
    slow = PrefillBudget(256, 1.5)
    slow.observe(1, 0, 0.010)
    slow.observe(1, 8, 0.010 + 8 * 0.050)  # a prompt token costs 5 decode steps
    assert slow.tokens(1) == MIN_PREFILL
    fast = PrefillBudget(64, 2.0)  # a GPU-like machine: prompt tokens nearly free beside decoding
    fast.observe(8, 0, 0.020)
    fast.observe(8, 8, 0.020)  # no measurable marginal cost
    assert [fast.tokens(8) for _ in range(4)] == [16, 32, 64, 64]  # doubles up to the cap


def test_a_slow_outlier_shrinks_the_chunk_and_it_recovers() -> None:
    budget = PrefillBudget(256, 2.0)
    budget.observe(7, 0, 0.070)
    budget.observe(7, 10, 0.070 + 10 * 0.0065)
    steady = budget.tokens(7)
    budget.observe(7, steady, 2.0)  # the step was descheduled
    assert budget.tokens(7) < steady
    for _ in range(30):
        budget.observe(7, 10, 0.070 + 10 * 0.0065)
    assert steady == 10 and budget.tokens(7) == steady  # 70 ms / 6.5 ms


def test_a_short_prompt_goes_whole_beside_decoding_sequences_and_a_long_one_in_budget_chunks() -> None:
    assert prompt_portion(40, 100, 0, True, 256) == 40  # fits
    assert prompt_portion(40, 8, 0, True, 256) == 40  # short: whole, past the budget
    assert prompt_portion(40, -32, 40, True, 256) == 40  # another short one joins the same step
    assert prompt_portion(40, -200, 220, True, 256) == 0  # ... up to prefill_chunk: the next step
    assert prompt_portion(40, 8, 12, False, 256) == 8  # nothing decodes: split at the budget as always
    assert prompt_portion(40, 8, 0, True, 16) == 8  # longer than prefill_chunk: chunked anyway
    assert prompt_portion(2000, 10, 0, True, 256) == 10  # a long prompt: the budget's chunk
    assert prompt_portion(2000, 0, 40, True, 256) == 0  # budget spent
