"""`margin tune`: distil the premium tier into the local one (see docs/tuning.md).

Each sub-command lives in its own module and is imported only when invoked, so `margin tune --help`
never imports torch.
"""

from __future__ import annotations

import importlib

import click

from margin.cli.help import examples

# name -> "module:attribute"
TUNE_COMMANDS: dict[str, str] = {
    "train": "margin.cli.tune_train:train",
    "resume": "margin.cli.tune_train:resume",
    "status": "margin.cli.tune_train:status",
    "job": "margin.cli.tune_train:job",
    "dataset": "margin.cli.tune_dataset:dataset",
    "promote": "margin.cli.tune_promote:promote",
    "drift": "margin.cli.tune_drift:drift",
}


class _LazyTuneGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(TUNE_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = TUNE_COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        command = getattr(importlib.import_module(module_name), attr)
        assert isinstance(command, click.Command)
        return command


@click.group(
    cls=_LazyTuneGroup,
    epilog=examples(
        "margin tune dataset build --group support --teacher premium --since 7d",
        "margin tune train --dataset support-2026-12 --base local",
        "margin tune resume JOB",
        "margin tune promote JOB --group support   # the evals gate, then shadow and canary",
    ),
)
def tune() -> None:
    """Datasets from traffic, LoRA training with checkpoint/resume, eval-gated promotion."""
