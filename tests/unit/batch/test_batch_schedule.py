"""Off-peak windows (past midnight, time zones) and the back-off that yields to interactive calls."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from margin.batch.schedule import OffPeak, Throttle
from margin.config.batch import BatchConfig, parse_window


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_a_window_past_midnight_in_a_time_zone() -> None:
    night = OffPeak(["22:00-06:00 Europe/Berlin"])  # UTC+1 in January
    assert night.open(at("2026-01-10T21:30:00"))  # 22:30 in Berlin
    assert night.open(at("2026-01-11T04:59:00"))  # 05:59 in Berlin
    assert not night.open(at("2026-01-11T05:00:00"))  # 06:00 in Berlin: closed
    assert not night.open(at("2026-01-10T12:00:00"))


def test_no_windows_means_always_and_several_add_up() -> None:
    assert OffPeak([]).open(at("2026-01-10T12:00:00"))
    lunch_and_night = OffPeak(["12:00-13:00", "23:00-23:30"])
    assert lunch_and_night.open(at("2026-01-10T12:30:00")) and lunch_and_night.open(at("2026-01-10T23:10:00"))
    assert not lunch_and_night.open(at("2026-01-10T14:00:00"))


@pytest.mark.parametrize("bad", ["22-06", "22:00-06:00 Mars/Olympus", "25:00-26:00"])
def test_bad_windows_are_config_errors(bad: str) -> None:
    with pytest.raises(ValueError, match="window"):
        BatchConfig(windows=[bad])
    with pytest.raises(ValueError):
        parse_window(bad)


def test_the_throttle_halves_under_pressure_and_comes_back_one_at_a_time() -> None:
    load = [0]
    throttle = Throttle(16, lambda: load[0], yield_above=4)
    load[0] = 10
    assert [throttle.adjust() for _ in range(5)] == [8, 4, 2, 1, 1]
    load[0] = 3
    assert [throttle.adjust() for _ in range(3)] == [2, 3, 4]
    assert Throttle(16, lambda: 99, yield_above=None).adjust() == 16  # no back-off configured
