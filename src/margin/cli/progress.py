"""One progress display for long commands: click's progress bar on stderr while stderr is a
terminal, nothing at all otherwise (a pipe, a file, CI logs), so output that is read by programs
never carries bar frames."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Protocol, TextIO

import click


class _Bar(Protocol):  # what is used of click's ProgressBar
    def update(self, n_steps: int) -> None: ...


class Progress:
    """`advance()` as work completes; `echo()` prints a line of output without breaking the bar."""

    def __init__(self, bar: _Bar | None, stream: TextIO) -> None:
        self._bar = bar
        self._stream = stream

    @property
    def shown(self) -> bool:
        return self._bar is not None

    def advance(self, steps: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(steps)

    def echo(self, line: str, *, err: bool = False) -> None:
        if self._bar is not None:
            self._stream.write("\r\x1b[K")  # clear the bar's line; the next step draws it below the text
            self._stream.flush()
        click.echo(line, err=err)


@contextlib.contextmanager
def progress(total: int, label: str, *, stream: TextIO | None = None) -> Iterator[Progress]:
    """A bar of `total` steps named `label` on stderr (or `stream`) when it is a terminal."""
    out = stream if stream is not None else sys.stderr
    if total <= 0 or not out.isatty():
        yield Progress(None, out)
        return
    with click.progressbar(length=total, label=label, file=out, show_pos=True, show_eta=True) as bar:
        yield Progress(bar, out)
