"""Threshold calibration and the `margin cache` command line."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from scipy.stats import beta
from test_cache_support import Upstream, backend_for, context, request, serve, stage_for

from margin.caching.semantic.bounds import clopper_pearson_lower, reaches, trials_needed
from margin.caching.semantic.calibrate import (
    LabelledPair,
    ScoredPair,
    choose_threshold,
    deduplicate,
    normalise,
    operating_point,
    read_pairs,
)
from margin.cli.cache import cache


def scored(*rows: tuple[float, bool, bool]) -> list[ScoredPair]:
    return [ScoredPair(similarity=s, guard_ok=g, same=same) for s, g, same in rows]


def ladder(right: int, wrong_at: tuple[int, ...] = (), *, top: float = 0.999, step: float = 1e-4) -> list[ScoredPair]:
    """`right + len(wrong_at)` guarded pairs in falling similarity; the pairs at `wrong_at` are wrong."""
    total = right + len(wrong_at)
    return [ScoredPair(top - i * step, True, i not in wrong_at) for i in range(total)]


def test_the_lowest_threshold_whose_lower_bound_meets_the_target_is_chosen() -> None:
    pairs = ladder(400, wrong_at=(350,))
    result = choose_threshold(pairs, 0.98, guard=True)
    assert result.recommended is not None and result.refusal is None
    point = result.recommended
    assert point.served == 401 and point.wrong == 1  # everything: 400/401 has a lower bound of 0.988
    assert point.precision_lower_bound == pytest.approx(beta.ppf(0.05, 400, 2), abs=1e-9)
    stricter = choose_threshold(pairs, 0.99, guard=True)
    assert stricter.recommended is not None and stricter.recommended.wrong == 0  # stops above the wrong pair
    assert stricter.recommended.served == 350 and stricter.recommended.precision_lower_bound >= 0.99


def test_a_perfect_point_estimate_is_not_enough() -> None:
    """The issue's case: 100% observed precision on too few pairs. 60 right hits out of 60 has a
    95% lower bound of 0.951, so a 0.99 target is refused, with the shortfall computed: 299 hits
    with no wrong one reach 0.99 (0.05^(1/299) = 0.99002)."""
    pairs = ladder(60) + [ScoredPair(0.5, True, False)] * 40  # 40 far negatives: never served
    result = choose_threshold(pairs, 0.99, guard=True)
    assert result.recommended is None and result.best.precision == 1.0
    assert result.best.precision_lower_bound == pytest.approx(0.05 ** (1 / 60))
    assert result.more_pairs_needed == math.ceil(299 * 100 / 60) - 100  # 60 of 100 pairs land above it
    assert (
        result.refusal is not None
        and "0.951" in result.refusal
        and f"{result.more_pairs_needed} more" in result.refusal
    )


def test_more_pairs_needed_is_what_it_takes() -> None:
    """Adding the number of pairs the refusal asks for, alike, gets a recommendation; fewer do not."""

    def mix(pairs: int) -> list[ScoredPair]:  # 3 in 5 pairs are served right, 2 in 5 are far negatives
        return ladder(pairs * 3 // 5, step=1e-5) + [ScoredPair(0.2, True, False)] * (pairs * 2 // 5)

    result = choose_threshold(mix(200), 0.98, guard=True)
    assert result.recommended is None and result.more_pairs_needed is not None
    enough = 200 + result.more_pairs_needed
    assert choose_threshold(mix(enough + 5), 0.98, guard=True).recommended is not None  # +5: the 3/5 rounding
    assert choose_threshold(mix(enough - 10), 0.98, guard=True).recommended is None


def test_no_amount_of_data_helps_when_the_observed_precision_is_below_the_target() -> None:
    pairs = [ScoredPair(0.99 - i * 0.001, True, i % 10 != 0) for i in range(200)]  # 90% right everywhere
    result = choose_threshold(pairs, 0.95, guard=True)
    assert result.recommended is None and result.more_pairs_needed is None
    assert result.refusal is not None and "will not help" in result.refusal


def test_the_guard_lets_a_lower_threshold_stay_precise() -> None:
    wrong_unguarded = [ScoredPair(0.9995 - i * 1e-5, False, False) for i in range(5)]
    pairs = wrong_unguarded + ladder(400, top=0.99)
    assert choose_threshold(pairs, 0.99, guard=True).recommended is not None
    plain = choose_threshold(pairs, 0.99, guard=False)
    assert plain.recommended is None  # the wrong pairs at the top sink the bound at every threshold


def test_tied_similarities_are_never_split() -> None:
    pairs = [*ladder(400), ScoredPair(0.5, True, True), ScoredPair(0.5, True, False)]
    result = choose_threshold(pairs, 0.99, guard=True)
    assert result.recommended is not None and result.recommended.threshold > 0.5


def test_operating_point_bounds() -> None:
    point = operating_point(scored((0.9, True, True), (0.95, True, False), (0.5, True, True)), 0.9, guard=True)
    assert (point.served, point.wrong, point.positives, point.negatives) == (2, 1, 2, 1)
    assert point.false_hit_rate == 1.0
    assert point.precision_lower_bound == pytest.approx(beta.ppf(0.05, 1, 2))


@pytest.mark.parametrize(("successes", "trials"), [(1, 1), (5, 10), (99, 100), (990, 1000), (17000, 18500), (3, 3)])
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_clopper_pearson_matches_scipy(successes: int, trials: int, confidence: float) -> None:
    expected = beta.ppf(1 - confidence, successes, trials - successes + 1)
    assert clopper_pearson_lower(successes, trials, confidence) == pytest.approx(expected, abs=1e-9)
    assert reaches(successes, trials, expected - 1e-7, confidence)
    assert not reaches(successes, trials, expected + 1e-7, confidence)
    assert clopper_pearson_lower(0, trials, confidence) == 0.0 and not reaches(0, 0, 0.5)


def test_trials_needed_is_the_smallest_that_reaches() -> None:
    assert trials_needed(1.0, 0.99) == 299
    needed = trials_needed(0.995, 0.99)
    assert needed is not None
    assert reaches(math.floor(0.995 * needed), needed, 0.99)
    assert not reaches(math.floor(0.995 * (needed - 1)), needed - 1, 0.99)
    assert trials_needed(0.99, 0.99) is None and trials_needed(0.9, 0.99) is None


def test_deduplication_drops_identical_repeated_and_conflicting_pairs() -> None:
    pairs = [
        LabelledPair("How do I reset my password?", "how do i reset my password", True),  # identical
        LabelledPair("How do I reset my password?", "How can I reset my password?", True),
        LabelledPair("how can I reset my password", "How do I reset my password", True),  # repeated, swapped
        LabelledPair("Is it safe?", "Is it not safe?", False),
        LabelledPair("is it safe", "is it NOT safe?!", True),  # the same pair labelled both ways
        LabelledPair("How do I reset my password?", "How can I reset my password?", True, route="other"),
    ]
    kept, report = deduplicate(pairs)
    assert [(p.a, p.route) for p in kept] == [
        ("How do I reset my password?", "*"),
        ("How do I reset my password?", "other"),
    ]
    assert (report.read, report.identical, report.repeated, report.conflicting, report.kept) == (6, 1, 1, 2, 2)
    assert normalise("  “Why   IS the sky blue??” ") == "why is the sky blue"


def test_read_pairs_accepts_the_common_label_names(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    lines = [{"a": "x", "b": "y", "same": True, "route": "chat"}, {"a": "x", "b": "z", "label": 0}, {}]
    path.write_text("\n".join(orjson.dumps(line).decode() for line in lines[:2]) + "\n\n")
    pairs = read_pairs(path)
    assert [(p.same, p.route) for p in pairs] == [(True, "chat"), (False, "*")]
    path.write_text(orjson.dumps(lines[2]).decode())
    with pytest.raises(ValueError, match=r"pairs\.jsonl:1"):
        read_pairs(path)


def _support_pairs(copies: int) -> list[dict[str, object]]:
    """Distinct paraphrase pairs (the hashing embedder scores them high) and far negatives."""
    rows: list[dict[str, object]] = []
    for i in range(copies):
        rows.append(
            {"a": f"How do I reset password number {i}?", "b": f"how to reset password number {i}", "same": True}
        )
        rows.append({"a": f"What is the capital of country {i}?", "b": f"Who painted picture {i}?", "same": False})
    return [{**row, "route": "chat"} for row in rows]


def test_calibrate_command_refuses_with_too_few_pairs(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    rows = _support_pairs(20)
    rows.append({"a": "How do I reset my password?", "b": "how do i reset my password", "same": True, "route": "chat"})
    path.write_text("\n".join(orjson.dumps(r).decode() for r in rows))
    runner = CliRunner()
    result = runner.invoke(cache, ["calibrate", str(path), "--target-precision", "0.99", "--embedder", "hashing"])
    assert result.exit_code == 1, result.output
    assert "41 pairs read, 40 kept: dropped 1 identical" in result.output
    assert "refused" in result.output and "more labelled pairs like these would be needed" in result.output
    assert "suggested config" not in result.output
    as_json = runner.invoke(cache, ["calibrate", str(path), "--embedder", "hashing", "--json", "--route", "chat"])
    report = orjson.loads(as_json.output)
    assert as_json.exit_code == 1 and report["_pairs"]["identical"] == 1
    guarded = report["chat"]["guarded"]
    assert guarded["recommended"] is False and guarded["more_pairs_needed"] > 0 and guarded["precision"] == 1.0
    assert guarded["precision_lower_bound"] == pytest.approx(0.05 ** (1 / 20), abs=1e-4)


def test_calibrate_command_recommends_when_the_bound_allows(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(orjson.dumps(r).decode() for r in _support_pairs(20)))
    runner = CliRunner()
    args = ["calibrate", str(path), "--embedder", "hashing", "--target-precision", "0.8"]
    result = runner.invoke(cache, args)
    assert result.exit_code == 0, result.output
    assert "recommended" in result.output and "suggested config" in result.output and "threshold:" in result.output
    missing = runner.invoke(cache, ["calibrate", str(path), "--embedder", "hashing", "--route", "nope"])
    assert missing.exit_code != 0


def test_stats_and_invalidate_commands(tmp_path: Path) -> None:
    config = tmp_path / "margin.yaml"
    config.write_text(f"cache:\n  path: {tmp_path / 'cache.db'}\n")

    async def fill() -> None:
        stage = stage_for(backend_for("sqlite", tmp_path))
        await serve(stage, context(), request("Hi"), Upstream())
        await stage.close()

    asyncio.run(fill())
    runner = CliRunner()
    stats = runner.invoke(cache, ["stats", "--config", str(config)])
    assert stats.exit_code == 0 and "entries 1" in stats.output
    assert runner.invoke(cache, ["invalidate", "--config", str(config)]).exit_code != 0  # no filter: refused
    dropped = runner.invoke(cache, ["invalidate", "--model", "chat", "--config", str(config)])
    assert dropped.exit_code == 0 and "dropped 1" in dropped.output
