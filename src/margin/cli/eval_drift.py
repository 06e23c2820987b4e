"""`margin eval drift history`: the scheduled re-evaluations of production samples (docs/evals.md,
"Production samples"), newest first: each run's score with its 95% interval, the baseline it was
compared with, whether the drift alert fired, and for a judged run the judge's outcomes and whether
it was inconclusive."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from margin.cli.help import examples
from margin.cli.output import echo_json
from margin.cli.report import CONFIG_OPTION, load_margin_config
from margin.cli.rollouts import with_service
from margin.rollout.drift import drift_view


@click.group("drift", epilog=examples("margin eval drift history", "margin eval drift history --group assistant"))
def drift() -> None:
    """Quality drift of the stable deployments on their production samples."""


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def line(view: dict[str, Any]) -> str:
    interval = f" [{_number(view['ci_low'])}, {_number(view['ci_high'])}]" if view["score"] is not None else ""
    if view["baseline"] is not None:
        against = f"baseline {_number(view['baseline'])} ({view['baseline_runs']} runs to {view['baseline_to']})"
    else:
        against = "baseline run" if view["in_baseline"] else "no baseline yet"
    flag = f"  DRIFT (margin {view['drift_margin']})" if view["drifted"] else ""
    flag += "  INCONCLUSIVE (too few agreed judge verdicts)" if view["inconclusive"] else ""
    judge = view["judge"]
    judged = (
        f"  judge agreed {judge['agreed']}  disagreed {judge['disagreed']}  unparseable {judge['unparseable']}  "
        f"failed {judge['failed']}  ${judge['spent_usd']}"
        if judge is not None
        else ""
    )
    return (
        f"{view['at']}  {view['model_group']}/{view['deployment']}  {view['items']} items  "
        f"score {_number(view['score'])}{interval}  {against}{flag}{judged}"
    )


@drift.command(
    "history",
    epilog=examples(
        "margin eval drift history",
        "margin eval drift history --group assistant --limit 10",
        "margin eval drift history --json --config margin.yaml",
    ),
)
@click.option("--group", default=None, help="Only this model group.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True, help="Newest first.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document: {runs: [...]}.")
@CONFIG_OPTION
def history(group: str | None, limit: int, as_json: bool, config_path: Path | None) -> None:
    """Every scheduled re-evaluation, newest first (kept in the database)."""
    config = load_margin_config(config_path)
    if group is not None and not any(g.name == group for g in config.models):
        known = ", ".join(g.name for g in config.models) or "none"
        raise click.ClickException(f"unknown model group {group!r} (configured: {known})")
    runs = with_service(config, lambda s: s.store.drift_runs(model_group=group, limit=limit))
    views = [drift_view(r) for r in runs]
    if as_json:
        echo_json({"runs": views})
        return
    if not views:
        click.echo("no re-evaluations recorded" + (f" for {group!r}" if group else ""), err=True)
    for view in views:
        click.echo(line(view))
