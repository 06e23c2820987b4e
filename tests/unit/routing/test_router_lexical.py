"""Lexical features: the quantity columns of version 2, the notation columns of version 3, and loading
specs saved with older versions."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from margin.routing.learned.features import FeatureSpec, Featurizer
from margin.routing.learned.lexical import (
    BASE_FEATURES,
    LEXICAL_FEATURES,
    OPTION_FEATURES,
    feature_names,
    lexical_features,
)
from margin.routing.learned.outcomes import outcomes_from_records
from margin.routing.learned.scorer import load_scorer
from margin.routing.learned.training import TrainingConfig, train_scorer

WORD_PROBLEM = (
    "Tom buys 3 apples at $1.50 each and twice as many pears. "
    "He pays with a 20 dollar bill. How much money does he have left?"
)


def column(row: np.ndarray, name: str) -> float:
    return float(row[LEXICAL_FEATURES.index(name)])


def test_quantity_features_of_a_word_problem() -> None:
    (row,) = lexical_features([WORD_PROBLEM])
    # numerals 3, 1.50, 20 plus the number word "twice"
    assert column(row, "log_quantities") == pytest.approx(math.log1p(4))
    assert column(row, "log_distinct_numbers") == pytest.approx(math.log1p(3))
    assert column(row, "log_max_number") == pytest.approx(math.log1p(20))
    assert column(row, "fractions_percents") == 1.0  # the decimal 1.50
    assert column(row, "money_mentions") == 2.0  # "$1" and "dollar"; the word "money" is not counted
    assert column(row, "log_last_sentence_words") == pytest.approx(math.log1p(7))  # the question
    assert column(row, "relation_density") > 0.0  # "each", "twice", "left"


def test_quantity_features_of_a_prompt_without_numbers() -> None:
    (row,) = lexical_features(["Write a haiku about autumn leaves"])
    for name in ("log_quantities", "log_distinct_numbers", "log_max_number", "fractions_percents", "money_mentions"):
        assert column(row, name) == 0.0
    assert lexical_features([""]).shape == (1, len(LEXICAL_FEATURES))


def test_thousands_separators_and_version_strings() -> None:
    (row,) = lexical_features(["Upgrade 1.2.3 costs 1,200 dollars"])
    assert column(row, "log_max_number") == pytest.approx(math.log1p(1200))


def test_notation_features_count_decimals_and_fractions() -> None:
    (row,) = lexical_features(["Mix 1/2 cup, 3 / 4 cup and 2.5 cups; version 1.2.3 ships at 7:30 for $1,200."])
    assert column(row, "fractions") == 2.0  # "1/2" and "3 / 4"; "7:30" is not a fraction
    assert column(row, "decimals") == 2.0  # "2.5" and "1.2.3" (a dotted numeral); "1,200" has no point
    (plain,) = lexical_features([WORD_PROBLEM])
    assert column(plain, "decimals") == 1.0 and column(plain, "fractions") == 0.0
    (none,) = lexical_features(["Write a haiku about autumn leaves"])
    assert column(none, "decimals") == column(none, "fractions") == 0.0


MULTIPLE_CHOICE = "Which of the following is NOT a prime number?\nA. 2\nB. 3\nC. 9\nD. all of the above\nAnswer:"


def test_option_features_of_a_multiple_choice_prompt() -> None:
    (row,) = lexical_features([MULTIPLE_CHOICE])
    assert column(row, "log_option_length") == pytest.approx(math.log1p((1 + 1 + 1 + 16) / 4))
    assert column(row, "option_length_spread") == pytest.approx(math.log1p(16) - math.log1p(1))
    assert column(row, "numeric_options") == 0.75
    assert column(row, "above_or_both") == 1.0
    assert column(row, "negated_stem") == 1.0  # "NOT" in capitals, in the stem
    assert column(row, "statements") == column(row, "roman_items") == 0.0
    stem = "Which of the following is NOT a prime number?\n"  # up to the first option line
    assert column(row, "log_stem_chars") == pytest.approx(math.log1p(len(stem)))
    (lower,) = lexical_features([MULTIPLE_CHOICE.replace("NOT", "not")])
    assert column(lower, "negated_stem") == 0.0
    (items,) = lexical_features(["Statement 1 | I and II hold.\nA. True, True\nB. False, False\nAnswer:"])
    assert column(items, "statements") == column(items, "roman_items") == 1.0


def test_option_features_are_zero_without_two_options() -> None:
    for prompt in (WORD_PROBLEM, "NOT EXCEPT all of the above, both?\nA. one option only"):
        (row,) = lexical_features([prompt])
        assert [column(row, name) for name in OPTION_FEATURES] == [0.0] * len(OPTION_FEATURES)


def test_each_version_is_the_first_columns_of_the_next() -> None:
    prompts = [WORD_PROBLEM, "Which of these is 1/3?\nA. 0.33\nB. 6\nC. 7\nD. 9\nAnswer:"]
    v2, v3 = lexical_features(prompts, version=2), lexical_features(prompts)
    assert v2.shape == (2, 20) and v3.shape == (2, 30) == (2, len(LEXICAL_FEATURES))
    assert np.array_equal(v2, v3[:, :20])
    assert feature_names(3) == LEXICAL_FEATURES and feature_names(2) == LEXICAL_FEATURES[:20]
    assert v3[1, LEXICAL_FEATURES.index("fractions")] == 1.0


def test_version_1_is_the_first_columns_of_version_2() -> None:
    prompts = [WORD_PROBLEM, "Which of these is a prime?\nA. 4\nB. 6\nC. 7\nD. 9\nAnswer:"]
    old, new = lexical_features(prompts, version=1), lexical_features(prompts)
    assert old.shape == (2, len(BASE_FEATURES)) == (2, 13)
    assert np.array_equal(old, new[:, : len(BASE_FEATURES)])
    assert feature_names(1) == BASE_FEATURES
    with pytest.raises(ValueError, match="lexical feature version"):
        feature_names(4)
    with pytest.raises(ValueError, match="lexical feature version"):
        FeatureSpec(embedder="none", lexical_version=0)


def test_spec_json_without_a_version_reads_as_version_1() -> None:
    spec = FeatureSpec(embedder="none")
    assert spec.lexical_version == 3
    assert FeatureSpec.from_json(spec.to_json()) == spec
    legacy = {key: value for key, value in spec.to_json().items() if key != "lexical_version"}
    assert FeatureSpec.from_json(legacy).lexical_version == 1
    assert Featurizer(FeatureSpec.from_json(legacy)).dim == 13


def test_a_model_file_saved_before_version_2_still_loads(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    records = [
        {"prompt": f"Add {' and '.join(str(x) for x in rng.integers(1, 99, 1 + i % 5))}.", "fold": i % 4 + 1}
        | {"weak_score": float(i % 5 < 2), "strong_score": 1.0}
        for i in range(80)
    ]
    outcomes = outcomes_from_records(records)
    spec = FeatureSpec(embedder="none", lexical_version=1)
    scorer = train_scorer(outcomes, TrainingConfig(features=spec, l2_grid=(1.0,))).scorer
    path = tmp_path / "old.npz"
    scorer.save(path)
    _drop_lexical_version(path)
    loaded = load_scorer(path)
    assert loaded.featurizer.spec.lexical_version == 1
    assert np.array_equal(loaded.score(outcomes.prompts[:10]), scorer.score(outcomes.prompts[:10]))


def _drop_lexical_version(path: Path) -> None:
    """Rewrite a model file's metadata the way files saved before lexical versions looked."""
    with np.load(path, allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    meta = json.loads(str(arrays["meta"]))
    del meta["features"]["lexical_version"]
    arrays["meta"] = np.array(json.dumps(meta))
    with path.open("wb") as handle:
        np.savez(handle, **arrays)


# The regexes the word counts were first written as; the set lookups over \w runs must agree with them.
REFERENCE = {
    "math_density": re.compile(r"[=+*/^<>%$\\]|\b(?:sqrt|log|sin|cos|integral|derivative|matrix|probability)\b"),
    "code_density": re.compile(r"```|\bdef |\bclass |\breturn\b|[{};]|\bimport\b|\bfunction\b"),
    "log_quantities": re.compile(
        r"\b(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|fifty"
        r"|hundred|thousand|million|half|twice|double|triple|third|quarter|dozen)\b",
        re.IGNORECASE,
    ),
    "relation_density": re.compile(
        r"\b(?:each|per|every|more|less|fewer|times|than|left|remaining|total|average|rate|after|before"
        r"|twice|half)\b",
        re.IGNORECASE,
    ),
    "money_mentions": re.compile(r"\$\s?\d|\bdollars?\b|\bcents?\b", re.IGNORECASE),
    "fractions_percents": re.compile(r"\d+\s*/\s*\d+|\d+\.\d+|%|\bpercent\b", re.IGNORECASE),
}
TRICKY = [
    "One2 three_four TWICE Half-price, $ 5 and $7 Dollars, 3 CENTS; per-cent",
    "def f(x): return {x}; ```code``` import os; class A: pass; undefined functions",
    "sqrt(2) + log x = Sin y; logarithm sqrtx matrix_1 Probability",
    "\u017fix dollars (a long s), \u212aelvin, Each EACH each_ more-than-less",
    "1/2 12.3/4 5 / 6.7 8%percent 9 PERCENT, 10percent %% Percentage 1.2.3 ./. 4/ /5",
    "",
]


@pytest.mark.parametrize("prompt", TRICKY)
def test_word_counts_match_the_regexes_they_replace(prompt: str) -> None:
    (row,) = lexical_features([prompt])
    words = max(len(re.findall(r"[A-Za-z]+", prompt)), 1)
    numerals = len(re.findall(r"\d+(?:[.,]\d+)*", prompt))
    assert column(row, "math_density") == len(REFERENCE["math_density"].findall(prompt)) / words
    assert column(row, "code_density") == len(REFERENCE["code_density"].findall(prompt)) / words
    quantities = numerals + len(REFERENCE["log_quantities"].findall(prompt))
    assert column(row, "log_quantities") == pytest.approx(math.log1p(quantities))
    assert column(row, "relation_density") == len(REFERENCE["relation_density"].findall(prompt)) / words
    assert column(row, "money_mentions") == len(REFERENCE["money_mentions"].findall(prompt))
    assert column(row, "fractions_percents") == len(REFERENCE["fractions_percents"].findall(prompt))
