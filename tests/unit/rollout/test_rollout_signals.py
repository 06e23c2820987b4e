"""SignalBuffer: what drain hands the engine to flush, and what restore puts back when the flush
failed (added to what arrived meanwhile, never lost, never counted twice)."""

from __future__ import annotations

from decimal import Decimal

from margin.rollout.arms import ArmTotals, bucket_of
from margin.rollout.signals import SignalBuffer
from margin.storage.rollouts import Arm

KEY: tuple[str, int, Arm] = ("ro_1", 0, "candidate")


def _fill(buffer: SignalBuffer) -> None:
    buffer.request(KEY, ok=True, latency_ms=120.0, ttft_ms=40.0, cost=Decimal("0.25"))
    buffer.request(KEY, ok=False, latency_ms=900.0, ttft_ms=None, cost=Decimal("0.125"))
    buffer.quality(KEY, 0.5)
    buffer.judged(KEY, 1)
    buffer.dropped(KEY)


def test_a_failed_flush_restored_adds_to_what_came_meanwhile() -> None:
    buffer = SignalBuffer()
    _fill(buffer)
    (first,) = buffer.drain()
    assert (first.requests, first.errors, first.successes, first.dropped) == (2, 1, 1, 1)
    assert (first.cost_success, first.cost_total) == (Decimal("0.25"), Decimal("0.375"))
    assert (first.quality_n, first.quality_sum, first.quality_sumsq) == (1, 0.5, 0.25)
    assert first.histograms == {"latency": {bucket_of(120.0): 1}, "ttft": {bucket_of(40.0): 1}, "judge": {1: 1}}
    assert buffer.drain() == []  # drained: nothing is handed out twice

    _fill(buffer)  # arrives while the flush of `first` fails
    buffer.restore([first])
    (both,) = buffer.drain()
    expected = ArmTotals()
    expected.add(first)
    expected.add(first)
    for name in ArmTotals.__dataclass_fields__:
        assert getattr(both, name) == getattr(expected, name), name
    assert both.requests == 4 and both.cost_total == Decimal("0.75")
    assert both.histograms["latency"] == {bucket_of(120.0): 2}


def test_restore_into_a_full_buffer_counts_what_it_lost() -> None:
    buffer = SignalBuffer(max_cells=1)
    _fill(buffer)
    delta = buffer.drain()[0]
    buffer.request(("ro_2", 0, "stable"), ok=True, latency_ms=1.0, ttft_ms=None, cost=None)  # the one cell
    buffer.restore([delta])
    assert buffer.lost == 1 and [d.rollout_id for d in buffer.drain()] == ["ro_2"]
