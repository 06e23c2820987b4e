"""Every `margin` command's --help ends with runnable examples, and long commands share one progress
display that draws only on a terminal."""

from __future__ import annotations

import importlib
import io
from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from margin.cli import COMMANDS, main
from margin.cli.help import EXAMPLES_HEADING
from margin.cli.progress import progress


def _walk(command: click.Command, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _walk(sub, (*path, name))


def every_command() -> list[tuple[str, ...]]:
    found = [()]
    for name, target in COMMANDS.items():
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if (error.name or "margin").startswith("margin"):
                raise
            continue  # an optional extra is missing: its command cannot be loaded either
        found += [path for path, _ in _walk(getattr(module, attr), (name,))]
    return found


COMMAND_PATHS = every_command()


def test_the_walk_finds_every_command() -> None:
    assert len(COMMAND_PATHS) > 30 and ("keys", "create") in COMMAND_PATHS and ("config", "show") in COMMAND_PATHS


@pytest.mark.parametrize("path", COMMAND_PATHS, ids=lambda path: " ".join(("margin", *path)))
def test_every_help_has_examples_of_that_command(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*path, "--help"], terminal_width=120)
    assert result.exit_code == 0, result.output
    assert EXAMPLES_HEADING in result.output, f"margin {' '.join(path)} --help has no Examples section"
    examples = result.output.split(EXAMPLES_HEADING, 1)[1].splitlines()
    commands = [line.strip() for line in examples if line.strip().startswith(("margin ", "MARGIN_", "eval "))]
    assert commands, "an Examples section shows at least one command line"
    invoked = " ".join(("margin", *path))
    assert any(line.startswith(invoked) or not path for line in commands), f"no example runs `{invoked}`"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_on_a_terminal_and_prints_lines_above_the_bar() -> None:
    screen = _Terminal()
    with progress(4, "embedding", stream=screen) as bar:
        assert bar.shown
        bar.advance(2)
        bar.echo("a row of output")
        bar.advance(2)
    drawn = screen.getvalue()
    assert "embedding" in drawn and "2/4" in drawn and drawn.rstrip().endswith("4/4\x1b[?25h")
    assert "\r\x1b[K" in drawn  # the bar's line was cleared before the row was printed


def test_progress_draws_nothing_when_not_a_terminal() -> None:
    pipe = io.StringIO()
    with progress(4, "embedding", stream=pipe) as bar:
        assert not bar.shown
        bar.advance(4)
    assert pipe.getvalue() == ""
