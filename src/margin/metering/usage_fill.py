"""Usage an upstream reported, completed by an estimate where (and only where) it reported nothing.

The rule (docs/ledger.md, "Estimated buckets"): a figure the upstream has reported is never replaced
by an estimate; an estimate only fills the buckets the upstream has not reported, and the result
names those buckets in `Usage.estimated_buckets`, which the ledger row keeps.

Some upstreams report in two halves. Anthropic's `message_start` carries the input figures (uncached,
cache write, cache read: final) and a first `output_tokens` (a floor: the answer has barely begun);
`message_delta` carries the cumulative totals. A report in progress is a `Usage` whose still-open
buckets are named in `estimated_buckets` (`in_progress`); when the stream breaks or its client leaves
before the totals arrive, each open bucket is billed the larger of the floor reported so far and the
estimate of what was generated (`fill_unreported`), so the estimate can raise it but never lower it.
"""

from __future__ import annotations

from dataclasses import replace

from margin.types import USAGE_BUCKETS, Usage

OUTPUT_BUCKETS = ("output", "output_reasoning", "output_audio")


def in_progress(report: Usage, open_buckets: tuple[str, ...] = OUTPUT_BUCKETS) -> Usage:
    """`report` as a report in progress: its `open_buckets` are not final yet."""
    return replace(report, source="estimated", estimated_buckets=_ordered(open_buckets))


def fill_unreported(reported: Usage | None, estimate: Usage) -> Usage:
    """The usage to bill: `reported`'s final figures as they are, `estimate` in the buckets it left
    open (the larger of the two there), or `estimate` alone when nothing was reported."""
    if reported is None:
        return replace(estimate, source="estimated", estimated_buckets=_ordered(estimate.estimated))
    still_open = reported.estimated
    if not still_open:
        return reported
    filled = {bucket: max(getattr(reported, bucket), getattr(estimate, bucket)) for bucket in still_open}
    return replace(reported, **filled, source="estimated", estimated_buckets=still_open)


def _ordered(buckets: tuple[str, ...]) -> tuple[str, ...]:
    """The named buckets in the ledger's column order; an unknown name is an error in the caller."""
    unknown = set(buckets) - set(USAGE_BUCKETS)
    if unknown:
        raise ValueError(f"not usage buckets: {sorted(unknown)}")
    return tuple(bucket for bucket in USAGE_BUCKETS if bucket in buckets)
