"""A 402 says what did not fit (this request's worst case, reserved before the call), what is left,
and the largest max_tokens that would fit; that figure is right (the request with it is answered,
one more token is refused)."""

from __future__ import annotations

from pathlib import Path

from limits_support import serve

from margin.budgets.estimate import largest_fitting


def test_largest_fitting_is_the_last_max_tokens_within_the_room() -> None:
    def needs(max_tokens: int) -> int:
        return 18 + 4 * max_tokens  # the prompt, then 4 per output token

    assert largest_fitting(needs, 50, 4095) == 8
    assert largest_fitting(needs, 22, 4095) == 1
    assert largest_fitting(needs, 21, 4095) is None  # the prompt alone does not fit with one token
    assert largest_fitting(needs, 10_000, 100) == 100  # capped by the search's upper bound
    assert largest_fitting(needs, 50, 0) is None


async def test_the_refusal_names_the_reservation_and_a_max_tokens_that_fits(tmp_path: Path) -> None:
    async with serve(tmp_path) as gw:
        # worst case on `chat` (small, then big): 9 prompt tokens x $2000/M + max_tokens x $4000/M
        key, _ = await gw.create_key(budget={"limit_usd": "0.05"})
        response = await gw.chat(key, max_tokens=10)
        assert response.status_code == 402
        error = response.json()["error"]
        assert error["requested"] == "0.058" and error["remaining"] == "0.05" and error["used"] == "0"
        # 0.018 + 8 x 0.004 = 0.05 fits; 9 would need 0.054
        assert error["max_tokens_that_fit"] == 8
        message = error["message"]
        assert message.startswith(f"Budget for {error['scope']} cannot hold this request")
        assert "reserves 0.058 USD" in message and "0.05 of the 0.05 USD limit is left" in message
        assert "max_tokens <= 8" in message and f"resets at {error['reset_at']}" in message
        assert (await gw.chat(key, max_tokens=9)).status_code == 402
        assert gw.calls() == 0
        assert (await gw.chat(key, max_tokens=8)).status_code == 200


async def test_without_max_tokens_the_default_is_what_did_not_fit(tmp_path: Path) -> None:
    async with serve(tmp_path) as gw:
        key, _ = await gw.create_key(budget={"limit_usd": "0.05"})
        response = await gw.chat(key)  # limits.default_max_output_tokens (4096) is reserved
        error = response.json()["error"]
        assert response.status_code == 402 and error["max_tokens_that_fit"] == 8
        assert "max_completion_tokens" not in error["message"]


async def test_a_prompt_that_alone_does_not_fit_says_so(tmp_path: Path) -> None:
    async with serve(tmp_path) as gw:
        key, _ = await gw.create_key(budget={"limit_usd": "0.02"})  # the prompt plus one token: 0.022
        error = (await gw.chat(key, max_tokens=10)).json()["error"]
        assert "max_tokens_that_fit" not in error
        assert "No max_tokens fits (the prompt alone needs more)" in error["message"]


async def test_a_used_up_budget_says_it_is_used_up(tmp_path: Path) -> None:
    async with serve(tmp_path) as gw:
        key, _ = await gw.create_key(budget={"limit_usd": "0.01"})  # worst case of one token: 0.009 + 0.001
        assert (await gw.chat(key, model="cheap", max_tokens=1)).status_code == 200  # actual: 0.009
        await gw.settled()
        error = (await gw.chat(key, model="cheap", max_tokens=1)).json()["error"]
        assert error["remaining"] == "0.001" and "max_tokens_that_fit" not in error  # the prompt alone: 0.009
    async with serve(tmp_path / "zero") as gw:
        key, _ = await gw.create_key(budget={"limit_usd": "0"})
        error = (await gw.chat(key, model="cheap", max_tokens=1)).json()["error"]
        assert error["remaining"] == "0" and "max_tokens_that_fit" not in error
        assert error["message"].startswith(f"Budget exceeded for {error['scope']}: 0 of its 0 USD this window is used")


async def test_a_token_budget_counts_tokens(tmp_path: Path) -> None:
    async with serve(tmp_path) as gw:
        key, _ = await gw.create_key(budget={"limit_tokens": 20})
        error = (await gw.chat(key, max_tokens=50)).json()["error"]
        assert error["unit"] == "tokens" and error["requested"] == 59  # 9 prompt + 50 output
        assert error["max_tokens_that_fit"] == 11
