"""Cheap surface features of a prompt that correlate with how hard it is for a small model.

Length, numbers, maths and code density, multiple-choice layout: each is a few regex counts, so the
whole vector costs tens of microseconds. They complement a sentence embedding, which is normalised
and so blind to length, and which sees digits poorly.

Version 2 adds quantity features for arithmetic word problems: how many quantities (digits and number
words) a prompt states, how large they get, fractions and percentages, money, relation words ("each",
"more than", "left") and the length of the final sentence (the question asked). A multi-step word
problem is hard for a small model roughly in proportion to the quantities it has to combine, which a
mean-pooled embedding cannot count. On the RouteLLM GSM8K cross-fold benchmark they added 0.026 APGR.
Version 3 adds two of them on their own: numerals with a decimal point and fractions written a/b
(version 2 counts both inside fractions_percents, with percentages). Chosen on inner folds of the
training folds among 13 candidate word-problem columns (the others: the most digits in a number,
percentages, time, unit, operation and multi-step words, sentences, numbers per sentence, question
phrases, round numbers), they lifted held-out GSM8K APGR 0.655 -> 0.671 in a GSM8K head. It also
adds features of a multiple-choice layout's answer options (0 for a prompt with fewer than two):
their mean length and spread, the share that are numbers, "all/none of the above" or "both", a
negated stem (NOT, EXCEPT, LEAST, FALSE, INCORRECT in capitals), "Statement 1", roman-numeral
items and the stem's length: MMLU inner-fold APGR 0.660 -> 0.663, held-out 0.675 -> 0.679.
Versions 1 and 2 (the first 13 and 20 columns) stay readable so that model files saved before keep loading.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_WORD = re.compile(r"[A-Za-z]+")
# \w runs are what \b delimits, so "\b(?:one|two)\b" matches exactly the runs that are "one" or
# "two": counting runs in a set gives the same numbers as those alternations, several times faster
# (each alternation is a scan of its own; these were half the cost of the lexical features).
_RUN = re.compile(r"\w+")
_MATH_SYMBOL = re.compile(r"[=+*/^<>%$\\]")
_MATH_WORDS = frozenset({"sqrt", "log", "sin", "cos", "integral", "derivative", "matrix", "probability"})
_CODE = re.compile(r"```|\bdef |\bclass |\breturn\b|[{};]|\bimport\b|\bfunction\b")
_CODE_HINTS = ("```", "def ", "class ", "return", "{", "}", ";", "import", "function")
_OPTION = re.compile(r"(?m)^\s*[A-D][.)]\s")
_SENTENCE_END = re.compile(r"[.?!](?:\s|$)")
_SENTENCE_BREAK = re.compile(r"(?<=[.?!])\s+")
_NUMBER_WORDS = frozenset(
    [
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "twenty",
        "thirty",
        "forty",
        "fifty",
        "hundred",
        "thousand",
        "million",
        "half",
        "twice",
        "double",
        "triple",
        "third",
        "quarter",
        "dozen",
    ]
)
_FRACTION = re.compile(r"\d+\s*/\s*\d+")
_OPTION_TEXT = re.compile(r"(?m)^\s*([A-D])[.)]\s*(.*)$")
_NEGATED = re.compile(r"\b(?:NOT|EXCEPT|LEAST|FALSE|INCORRECT)\b")
_NUMERIC_OPTION = re.compile(r"^[\s$-]*\d")
_ROMAN_ITEMS = frozenset({"I", "II", "III", "IV"})  # as \w runs: what \b(?:I|II|III|IV)\b matches
# fractions_percents counts r"\d+\s*/\s*\d+|\d+\.\d+|%|\bpercent\b" (ignoring case) as three disjoint
# counts: the digit patterns (no character in common with the others), "%", and "percent" as a \w
# run; the one alternation scanned every position of the prompt and was the costliest regex here.
_FRACTION_OR_DECIMAL = re.compile(r"\d+(?:\s*/\s*\d+|\.\d+)")
_RELATION_WORDS = frozenset(
    [
        "each",
        "per",
        "every",
        "more",
        "less",
        "fewer",
        "times",
        "than",
        "left",
        "remaining",
        "total",
        "average",
        "rate",
        "after",
        "before",
        "twice",
        "half",
    ]
)
_MONEY_SIGN = re.compile(r"\$\s?\d")
_MONEY_WORDS = frozenset({"dollar", "dollars", "cent", "cents"})

BASE_FEATURES: tuple[str, ...] = (
    "log_chars",
    "log_words",
    "log_lines",
    "log_numbers",
    "digit_ratio",
    "number_density",
    "math_density",
    "code_density",
    "has_options",
    "question_marks",
    "log_sentences",
    "mean_word_length",
    "upper_ratio",
)
QUANTITY_FEATURES: tuple[str, ...] = (
    "log_quantities",
    "log_distinct_numbers",
    "log_max_number",
    "fractions_percents",
    "relation_density",
    "money_mentions",
    "log_last_sentence_words",
)
NOTATION_FEATURES: tuple[str, ...] = ("decimals", "fractions")
OPTION_FEATURES: tuple[str, ...] = (
    "log_option_length",
    "option_length_spread",
    "numeric_options",
    "above_or_both",
    "negated_stem",
    "statements",
    "roman_items",
    "log_stem_chars",
)
LEXICAL_VERSION = 3
LEXICAL_FEATURES: tuple[str, ...] = BASE_FEATURES + QUANTITY_FEATURES + NOTATION_FEATURES + OPTION_FEATURES
_VERSIONS: dict[int, tuple[str, ...]] = {
    1: BASE_FEATURES,
    2: BASE_FEATURES + QUANTITY_FEATURES,
    3: BASE_FEATURES + QUANTITY_FEATURES + NOTATION_FEATURES + OPTION_FEATURES,
}


def feature_names(version: int = LEXICAL_VERSION) -> tuple[str, ...]:
    """Column names of a lexical feature version (1: base; 2: + quantities; 3: + notation and options)."""
    if version not in _VERSIONS:
        raise ValueError(f"unknown lexical feature version {version}; this margin knows {sorted(_VERSIONS)}")
    return _VERSIONS[version]


def lexical_features(prompts: Sequence[str], version: int = LEXICAL_VERSION) -> NDArray[np.float64]:
    """Shape (len(prompts), len(feature_names(version))); unscaled (the scorer standardises them)."""
    width = len(feature_names(version))
    rows = []
    for prompt in prompts:
        runs, words, numerals = _RUN.findall(prompt), _WORD.findall(prompt), _NUMBER.findall(prompt)
        row = _base(prompt, runs, words, numerals)
        if version >= 2:
            row += _quantities(prompt, runs, len(words), numerals)
            if version >= 3:
                row += [float(sum("." in numeral for numeral in numerals)), float(len(_FRACTION.findall(prompt)))]
                row += _options(prompt, runs)
        rows.append(row)
    return np.array(rows, dtype=np.float64).reshape(len(prompts), width)


def _base(prompt: str, runs: Sequence[str], words: Sequence[str], numerals: Sequence[str]) -> list[float]:
    chars = max(len(prompt), 1)
    word_count = max(len(words), 1)
    numbers = len(numerals)
    maths = len(_MATH_SYMBOL.findall(prompt)) + sum(run in _MATH_WORDS for run in runs)
    # Most prompts hold none of the code markers: skip the regex for them (same count, 0).
    code = len(_CODE.findall(prompt)) if any(hint in prompt for hint in _CODE_HINTS) else 0
    return [
        np.log1p(len(prompt)),
        np.log1p(len(words)),
        np.log1p(prompt.count("\n")),
        np.log1p(numbers),
        sum(map(str.isdigit, prompt)) / chars,
        numbers / word_count,
        maths / word_count,
        code / word_count,
        float(len(_OPTION.findall(prompt)) >= 2),
        float(min(prompt.count("?"), 5)),
        np.log1p(len(_SENTENCE_END.findall(prompt))),
        sum(len(w) for w in words) / word_count,
        sum(map(str.isupper, prompt)) / chars,
    ]


def _quantities(prompt: str, runs: Sequence[str], words: int, numerals: Sequence[str]) -> list[float]:
    word_count = max(words, 1)
    sentences = _SENTENCE_BREAK.split(prompt.strip())
    lowered = [run.casefold() for run in runs]  # casefold, as re.IGNORECASE folds (the long s too)
    return [
        np.log1p(len(numerals) + sum(run in _NUMBER_WORDS for run in lowered)),
        np.log1p(len(set(numerals))),
        np.log1p(_largest_number(numerals)),
        float(len(_FRACTION_OR_DECIMAL.findall(prompt)) + prompt.count("%") + sum(run == "percent" for run in lowered)),
        sum(run in _RELATION_WORDS for run in lowered) / word_count,
        float(len(_MONEY_SIGN.findall(prompt)) + sum(run in _MONEY_WORDS for run in lowered)),
        np.log1p(len(_WORD.findall(sentences[-1]))),
    ]


def _options(prompt: str, runs: Sequence[str]) -> list[float]:
    """Answer-option features (see OPTION_FEATURES); zeros unless the prompt lists at least two options.

    Plain floats and math, not numpy scalars: this runs once a decision, and numpy's per-call cost
    on scalars was most of it."""
    matches = list(_OPTION_TEXT.finditer(prompt))
    if len(matches) < 2:
        return [0.0] * len(OPTION_FEATURES)
    options = [match.group(2) for match in matches]
    stem = prompt[: matches[0].start()]
    lengths = [len(option) for option in options]
    lowered = prompt.casefold()
    return [
        math.log1p(sum(lengths) / len(lengths)),
        math.log1p(max(lengths)) - math.log1p(min(lengths)),
        sum(_NUMERIC_OPTION.match(option) is not None for option in options) / len(options),
        float("all of the above" in lowered or "none of the above" in lowered or _has_token(lowered, "both")),
        float(_NEGATED.search(stem) is not None),
        float("statement 1" in lowered),
        float(any(run in _ROMAN_ITEMS for run in runs)),
        math.log1p(len(stem)),
    ]


def _has_token(text: str, token: str) -> bool:
    """Whether `token` occurs in `text` between whitespace (or its ends): `token in text.split()`,
    without building the list."""
    start = text.find(token)
    while start >= 0:
        end = start + len(token)
        if (start == 0 or text[start - 1].isspace()) and (end == len(text) or text[end].isspace()):
            return True
        start = text.find(token, start + 1)
    return False


def _largest_number(numerals: Sequence[str]) -> float:
    """The largest numeral's value; "1,200" reads as 1200, and "1.2.3" (a version, not a number) is skipped."""
    values = []
    for numeral in numerals:
        try:
            values.append(float(numeral.replace(",", "")))
        except ValueError:
            continue
    return max(values, default=0.0)
