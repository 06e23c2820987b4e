"""`margin router train --add`: a tier's own outcomes appended to another file's, row for row."""

from __future__ import annotations

import numpy as np

from margin.routing.learned.outcomes import concat_outcomes, outcomes_from_records


def test_concatenated_outcomes_keep_every_row_and_column() -> None:
    base = outcomes_from_records([{"prompt": "a", "weak_score": 0.1, "strong_score": 0.9, "fold": 2}])
    student = outcomes_from_records(
        [{"prompt": "b", "weak_score": 1, "strong_score": 1, "benchmark": "tuning:ts", "weak_out_tokens_est": 7},
         {"prompt": "c", "weak_score": 0, "strong_score": 1, "benchmark": "tuning:ts"}]
    )  # fmt: skip
    both = concat_outcomes([base, student])
    assert both.prompts == ("a", "b", "c") and both.benchmarks == ("custom", "tuning:ts", "tuning:ts")
    assert np.array_equal(both.weak_score, [0.1, 1.0, 0.0]) and np.array_equal(both.weak_out_tokens, [0, 7, 0])
    assert both.fold[0] == 2 and len(both) == 3
