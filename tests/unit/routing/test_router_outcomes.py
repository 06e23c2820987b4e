"""The outcomes JSONL schema: required fields, defaults, filtering and prices."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from margin.routing.learned.outcomes import OutcomeFormatError, TierPrices, default_fold, load_outcomes


def write(path: Path, rows: Sequence[object]) -> Path:
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n\n", encoding="utf-8")
    return path


def test_full_and_minimal_rows(tmp_path: Path) -> None:
    full = {
        "id": "mmlu:x:0",
        "benchmark": "mmlu",
        "category": "x",
        "prompt": "What is 2+2?",
        "weak_score": 1.0,
        "strong_score": 1,
        "in_tokens_est": 10,
        "weak_out_tokens_est": 2,
        "strong_out_tokens_est": 3,
        "contaminated": True,
        "fold": 2,
    }
    minimal = {"prompt": "abcdefgh", "weak_score": 0, "strong_score": 1}
    outcomes = load_outcomes(write(tmp_path / "o.jsonl", [full, minimal]))
    assert len(outcomes) == 2
    assert outcomes.ids == ("mmlu:x:0", "1")
    assert outcomes.benchmarks == ("mmlu", "custom")
    assert outcomes.in_tokens.tolist() == [10.0, 2.0]  # chars / 4 by default
    assert outcomes.strong_out_tokens.tolist() == [3.0, 0.0]
    assert outcomes.fold.tolist() == [2, default_fold("abcdefgh")]
    assert 1 <= default_fold("abcdefgh") <= 4
    assert outcomes.contaminated.tolist() == [True, False]


def test_select_drops_contaminated_and_filters(tmp_path: Path) -> None:
    rows = [
        {"prompt": f"p{i}", "weak_score": 0, "strong_score": 1, "benchmark": b, "fold": f, "contaminated": c}
        for i, (b, f, c) in enumerate([("a", 1, False), ("a", 2, True), ("b", 1, False), ("b", 3, False)])
    ]
    outcomes = load_outcomes(write(tmp_path / "o.jsonl", rows))
    assert outcomes.select().prompts == ("p0", "p2", "p3")
    assert outcomes.select(include_contaminated=True, benchmarks=["a"]).prompts == ("p0", "p1")
    assert outcomes.select(folds=[1]).prompts == ("p0", "p2")
    assert outcomes.benchmark_names() == ["a", "b"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "JSON object"),
        ('{"weak_score": 0, "strong_score": 1}', "prompt"),
        ('{"prompt": "x", "weak_score": "1", "strong_score": 1}', "weak_score"),
        ('{"prompt": "x", "weak_score": 1, "strong_score": true}', "strong_score"),
    ],
)
def test_malformed_lines(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(line + "\n", encoding="utf-8")
    with pytest.raises(OutcomeFormatError, match=message):
        load_outcomes(path)


def test_folds_are_kept_as_the_file_gives_them(tmp_path: Path) -> None:
    rows = [
        {"prompt": "zero", "weak_score": 0, "strong_score": 1, "fold": 0},
        {"prompt": "seven", "weak_score": 0, "strong_score": 1, "fold": 7},
        {"prompt": "float", "weak_score": 0, "strong_score": 1, "fold": 2.0},
        {"prompt": "none", "weak_score": 0, "strong_score": 1, "fold": None},
    ]
    outcomes = load_outcomes(write(tmp_path / "o.jsonl", rows))
    assert outcomes.fold.tolist() == [0, 7, 2, default_fold("none")]
    assert outcomes.fold_names() == sorted({0, 7, 2, default_fold("none")})
    assert outcomes.select(folds=[0]).prompts == ("zero",)


@pytest.mark.parametrize("fold", ['"2"', "2.5", "true", "NaN"])
def test_a_fold_that_is_not_an_integer_is_refused(tmp_path: Path, fold: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "ok", "weak_score": 0, "strong_score": 1}\n', encoding="utf-8")
    path.write_text(path.read_text() + f'{{"prompt": "x", "weak_score": 0, "strong_score": 1, "fold": {fold}}}\n')
    with pytest.raises(OutcomeFormatError, match=r"bad.jsonl:2: 'fold' must be an integer"):
        load_outcomes(path)


def test_categories_default_to_the_benchmark(tmp_path: Path) -> None:
    rows = [
        {"prompt": "a", "weak_score": 0, "strong_score": 1, "benchmark": "mmlu", "category": "anatomy"},
        {"prompt": "b", "weak_score": 0, "strong_score": 1, "benchmark": "gsm8k"},
        {"prompt": "c", "weak_score": 0, "strong_score": 1},
    ]
    outcomes = load_outcomes(write(tmp_path / "o.jsonl", rows))
    assert outcomes.categories == ("anatomy", "gsm8k", "custom")
    assert outcomes.take(np.array([2, 0])).categories == ("custom", "anatomy")


def test_prices_turn_tokens_into_dollars(tmp_path: Path) -> None:
    row = {
        "prompt": "x",
        "weak_score": 0,
        "strong_score": 1,
        "in_tokens_est": 1_000_000,
        "weak_out_tokens_est": 1_000_000,
        "strong_out_tokens_est": 2_000_000,
    }
    outcomes = load_outcomes(write(tmp_path / "o.jsonl", [row]))
    prices = TierPrices(weak_input=1.0, weak_output=2.0, strong_input=10.0, strong_output=30.0)
    assert np.allclose(prices.weak_cost(outcomes), [3.0])
    assert np.allclose(prices.strong_cost(outcomes), [70.0])
