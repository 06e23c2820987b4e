"""When batch lines may start, beside interactive traffic: off-peak windows (`batch.windows`) and a
back-off that halves the batch's concurrency while interactive calls crowd this replica and gives it
back one slot at a time when they are gone (additive increase, multiplicative decrease)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from margin.config.batch import parse_window


class OffPeak:
    """Lines start only inside one of the windows; no windows: always."""

    def __init__(self, windows: Sequence[str]) -> None:
        self.windows = [parse_window(w) for w in windows]

    def open(self, instant: float) -> bool:
        return not self.windows or any(w.contains(instant) for w in self.windows)


class Throttle:
    """The number of lines the worker may run now, between 1 and `ceiling`."""

    def __init__(self, ceiling: int, interactive: Callable[[], int], yield_above: int | None) -> None:
        self.ceiling = ceiling
        self.limit = ceiling
        self.interactive = interactive  # interactive upstream calls open on this replica now
        self.yield_above = yield_above

    def adjust(self) -> int:
        """Look at the interactive load once: halve under pressure, else give back one slot."""
        if self.yield_above is None:
            return self.limit
        if self.interactive() > self.yield_above:
            self.limit = max(1, self.limit // 2)
        else:
            self.limit = min(self.ceiling, self.limit + 1)
        return self.limit
