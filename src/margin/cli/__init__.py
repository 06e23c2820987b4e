"""Thin command line: each sub-command lives in its own module and is imported only when invoked."""

from __future__ import annotations

import importlib
import importlib.util

import click

from margin.cli.help import examples

# name -> "module:attribute". Lazy so `margin --help` and `margin serve` never import the planner,
# the router trainer or a storage driver they do not use.
COMMANDS: dict[str, str] = {
    "serve": "margin.cli.serve:serve",
    "config": "margin.cli.config:config",
    "models": "margin.cli.models:models",
    "fake-upstream": "margin.cli.fake_upstream:fake_upstream",
    "plan": "margin.cli.plan:plan",
    "simulate": "margin.cli.simulate:simulate",
    "router": "margin.cli.router:router",
    "prices": "margin.cli.prices:prices",
    "bench-upstream": "margin.cli.bench_upstream:bench_upstream",
    "report": "margin.cli.report:report",
    "reprice": "margin.cli.reprice:reprice",
    "reconcile": "margin.cli.reconcile:reconcile_group",
    "cache": "margin.cli.cache:cache",
    "keys": "margin.cli.keys:keys",
    "teams": "margin.cli.objects:teams",
    "budgets": "margin.cli.objects:budgets",
    "limits": "margin.cli.objects:limits",
    "audit": "margin.cli.objects:audit",
    "reload": "margin.cli.objects:reload_command",
    "migrate": "margin.cli.migrate:migrate",
    "eval": "margin.cli.evals:eval_group",
    "rollout": "margin.cli.rollouts:rollout",
    "requests": "margin.cli.requests:requests",
    "batch": "margin.cli.batch:batch",
    "whatif": "margin.cli.whatif:whatif",
    "tune": "margin.cli.tune:tune",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name in COMMANDS if _exists(COMMANDS[name]))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None or not _exists(target):
            return None
        module_name, attr = target.split(":")
        command = getattr(importlib.import_module(module_name), attr)
        assert isinstance(command, click.Command)
        return command


def _exists(target: str) -> bool:
    return importlib.util.find_spec(target.split(":")[0]) is not None


@click.group(
    cls=LazyGroup,
    epilog=examples(
        "margin serve                                  # the embedded default, offline",
        "margin serve --config margin.yaml --data-dir /var/lib/margin",
        "margin report --since 24h --by team",
        "margin COMMAND --help                         # each command's options and examples",
        "# shell completion (bash; zsh_source and fish_source too): docs/configuration.md",
        'eval "$(_MARGIN_COMPLETE=bash_source margin)"',
    ),
)
@click.version_option(package_name="margin")
def main() -> None:
    """margin: one endpoint for every model tier, with cost truth."""
