"""Per-arm signals in memory, fed by the record stage (and the shadow and online-grading workers),
added to the store every `rollouts.flush_every_s` by the engine. Nothing here waits or does I/O."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from margin.rollout.arms import ArmTotals, bucket_of
from margin.storage.rollouts import Arm, HistogramMetric, SignalDelta

_Key = tuple[str, int, Arm]


@dataclass(slots=True)
class _Pending(ArmTotals):
    """One arm's counts since the last flush: the same figures as a stored window's totals."""

    def count(self, metric: HistogramMetric, ms: float) -> None:
        cells = self.histograms.setdefault(metric, {})
        b = bucket_of(ms)
        cells[b] = cells.get(b, 0) + 1


class SignalBuffer:
    def __init__(self, max_cells: int = 10_000) -> None:
        self._cells: dict[_Key, _Pending] = {}
        self.max_cells = max_cells  # a store that stays down must not grow this without bound
        self.lost = 0  # observations dropped because the buffer was full

    def _cell(self, key: _Key) -> _Pending | None:
        cell = self._cells.get(key)
        if cell is None:
            if len(self._cells) >= self.max_cells:
                self.lost += 1
                return None
            cell = self._cells[key] = _Pending()
        return cell

    def request(self, key: _Key, *, ok: bool, latency_ms: float, ttft_ms: float | None, cost: Decimal | None) -> None:
        cell = self._cell(key)
        if cell is None:
            return
        cell.requests += 1
        spent = cost or Decimal(0)
        cell.cost_total += spent
        if ok:
            cell.successes += 1
            cell.cost_success += spent
            cell.count("latency", latency_ms)
            if ttft_ms is not None:
                cell.count("ttft", ttft_ms)
        else:
            cell.errors += 1

    def quality(self, key: _Key, score: float) -> None:
        cell = self._cell(key)
        if cell is not None:
            cell.quality_n += 1
            cell.quality_sum += score
            cell.quality_sumsq += score * score

    def judged(self, key: _Key, outcome: int) -> None:
        """One online-judge outcome (margin.rollout.arms.JUDGE_OUTCOMES) on the arm's answers."""
        cell = self._cell(key)
        if cell is not None:
            cells = cell.histograms.setdefault("judge", {})
            cells[outcome] = cells.get(outcome, 0) + 1

    def dropped(self, key: _Key) -> None:
        cell = self._cell(key)
        if cell is not None:
            cell.dropped += 1

    def drain(self) -> list[SignalDelta]:
        cells, self._cells = self._cells, {}
        return [
            SignalDelta(
                rollout_id=rid,
                step=step,
                arm=arm,
                requests=c.requests,
                errors=c.errors,
                successes=c.successes,
                cost_success=c.cost_success,
                cost_total=c.cost_total,
                quality_n=c.quality_n,
                quality_sum=c.quality_sum,
                quality_sumsq=c.quality_sumsq,
                dropped=c.dropped,
                histograms=c.histograms,
            )
            for (rid, step, arm), c in cells.items()
        ]

    def restore(self, deltas: list[SignalDelta]) -> None:
        """Put back what a failed flush could not write (added to what arrived meanwhile)."""
        for d in deltas:
            cell = self._cell((d.rollout_id, d.step, d.arm))
            if cell is not None:
                cell.add(d)
