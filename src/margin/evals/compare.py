"""Paired comparison of two runs of the same eval set: item by item, candidate minus baseline.

Pairing removes the items' own difficulty from the noise: each item is its own control, so a small
true difference shows up with far fewer items than comparing two independent means would need.
"""

from __future__ import annotations

from dataclasses import dataclass

from margin.evals.errors import ResultsFileError
from margin.evals.results import RunResults
from margin.evals.stats import SEED, Interval, McNemar, lower_bound, mcnemar_exact, mean_interval, weighted_mean
from margin.evals.summary import RunSummary, summarise


@dataclass(frozen=True, slots=True)
class ItemDiff:
    id: str
    baseline: float
    candidate: float
    weight: float

    @property
    def diff(self) -> float:
        return self.candidate - self.baseline


@dataclass(frozen=True, slots=True)
class Comparison:
    baseline: RunSummary
    candidate: RunSummary
    diffs: tuple[ItemDiff, ...]  # paired items, in the baseline's order
    only_baseline: tuple[str, ...]  # item ids the candidate run lacks
    only_candidate: tuple[str, ...]
    mean_diff: float | None
    interval: Interval | None  # two-sided, at `level`
    mcnemar: McNemar | None  # when both runs graded every paired item pass/fail
    seed: int

    @property
    def wins(self) -> tuple[str, ...]:
        """Items the candidate did better on."""
        return tuple(d.id for d in self.diffs if d.diff > 0)

    @property
    def losses(self) -> tuple[str, ...]:
        return tuple(d.id for d in self.diffs if d.diff < 0)

    @property
    def ties(self) -> int:
        return sum(1 for d in self.diffs if d.diff == 0)

    def lower_bound(self, confidence: float) -> float | None:
        """One-sided lower confidence bound of the mean paired difference (paired bootstrap)."""
        return lower_bound([d.diff for d in self.diffs], [d.weight for d in self.diffs], confidence=confidence,
                           seed=self.seed)  # fmt: skip


def compare_runs(
    baseline: RunResults, candidate: RunResults, *, level: float = 0.95, seed: int = SEED, mcnemar: bool = True
) -> Comparison:
    """Pair the runs by item id. `mcnemar=False` skips the test (it needs scipy)."""
    if baseline.set_name and candidate.set_name and baseline.set_name != candidate.set_name:
        raise ResultsFileError(
            f"{baseline.path} is a run of {baseline.set_name!r} and {candidate.path} of {candidate.set_name!r}: "
            "compare two runs of the same set"
        )
    diffs = tuple(
        ItemDiff(item.id, item.quality, candidate.items[item.id].quality, item.weight)
        for item in baseline
        if item.id in candidate.items
    )
    values, weights = [d.diff for d in diffs], [d.weight for d in diffs]
    return Comparison(
        baseline=summarise(baseline, level),
        candidate=summarise(candidate, level),
        diffs=diffs,
        only_baseline=tuple(i for i in baseline.items if i not in candidate.items),
        only_candidate=tuple(i for i in candidate.items if i not in baseline.items),
        mean_diff=weighted_mean(values, weights),
        interval=mean_interval(values, weights, level=level, seed=seed),
        mcnemar=_mcnemar(baseline, candidate, diffs) if mcnemar else None,
        seed=seed,
    )


def _mcnemar(baseline: RunResults, candidate: RunResults, diffs: tuple[ItemDiff, ...]) -> McNemar | None:
    pairs = [(baseline.items[d.id], candidate.items[d.id]) for d in diffs]
    if not pairs or not all(b.binary and c.binary for b, c in pairs):
        return None
    only_baseline = sum(1 for b, c in pairs if b.quality == 1.0 and c.quality == 0.0)
    only_candidate = sum(1 for b, c in pairs if b.quality == 0.0 and c.quality == 1.0)
    return mcnemar_exact(only_baseline, only_candidate)
