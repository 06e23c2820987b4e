"""`margin tune drift` (docs/tuning.md, "The router and the drift trigger"): the tuning proposals
made when an opted-in group's cheap deployment drifted below its baseline. It reads the drift history
from the database (every replica's runs), records the proposals not seen yet beside the ones the
gateways recorded, and prints one line each. With `tuning.drift.action: start` (or `--start`), each
new proposal also builds a fresh dataset from the group's traffic and starts a training job."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import click

from margin.cli.help import examples
from margin.cli.output import echo_json
from margin.cli.report import CONFIG_OPTION, load_margin_config
from margin.config.defaults import resolve_data_dir
from margin.config.environment import EVAL_API_KEY
from margin.config.model import MarginConfig
from margin.errors import MarginError
from margin.storage.rollouts import DriftRecord
from margin.tuning.drift import Proposal, proposal_for, proposal_view, read_proposals, record_proposals


@click.command(
    "drift",
    epilog=examples(
        "margin tune drift --config margin.yaml            # from cron: list (and record) the proposals",
        "margin tune drift --start --url http://127.0.0.1:8080 --config margin.yaml",
    ),
)
@click.option("--start", "start_now", is_flag=True, help="Act on new proposals (as tuning.drift.action: start).")
@click.option("--since", default="7d", show_default=True, help="A started job's dataset: traffic this recent.")
@click.option("--url", default=None, help="A running margin for the teacher's calls (default: in-process).")
@click.option("--api-key", envvar=EVAL_API_KEY.name, default=None, help="The virtual key (MARGIN_API_KEY).")
@click.option("--json", "as_json", is_flag=True)
@CONFIG_OPTION
def drift(
    start_now: bool, since: str, url: str | None, api_key: str | None, as_json: bool, config_path: Path | None
) -> None:
    """List the tuning proposals made by drift of the cheap tier; optionally start them."""
    config = load_margin_config(config_path)
    data_dir = resolve_data_dir(config)
    runs = asyncio.run(_drift_runs(config))
    found = [p for p in (proposal_for(config, r) for r in runs) if p is not None]
    new = record_proposals(data_dir, found)
    every = read_proposals(data_dir)
    if as_json:
        echo_json([proposal_view(p) for p in every])
    else:
        for proposal in every:
            click.echo(("new  " if proposal in new else "     ") + proposal.line())
        if not every:
            click.echo("no tuning proposal: no opted-in cheap deployment has drifted")
    if start_now or config.tuning.drift.action == "start":
        for proposal in new:
            _start(config, proposal, since, url, api_key)


async def _drift_runs(config: MarginConfig) -> list[DriftRecord]:
    from margin.storage.rollout_stores import open_rollout_store

    store = open_rollout_store(config.database.url, resolve_data_dir(config))
    try:
        await store.migrate()
        runs: list[DriftRecord] = []
        for source in config.tuning.sources:
            runs.extend(await store.drift_runs(model_group=source.group, limit=50))
        return runs
    finally:
        await store.close()


def _start(config: MarginConfig, proposal: Proposal, since: str, url: str | None, api_key: str | None) -> None:
    """A fresh dataset from the group's traffic, then a training job on it (docs/tuning.md)."""
    from margin.cli.tune_dataset import build_and_report

    name = f"{proposal.model_group}-drift-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    manifest = build_and_report(config, name, proposal.model_group, proposal.teacher, since, url, api_key)
    source = config.tuning.source(proposal.model_group)
    base = source.auto_train_base if source is not None and source.auto_train_base else "local"
    try:
        from margin.tuning import launch
        from margin.tuning.settings import TrainSettings

        job = launch.create(resolve_data_dir(config), dataset=manifest.name, base=base, settings=TrainSettings())
        launch.spawn(job, resume=False)
    except MarginError as exc:
        raise click.ClickException(f"dataset {manifest.name} built, but no job started: {exc.message}") from None
    click.echo(f"started training job {job.name} on dataset {manifest.name} ({manifest.total} examples)")
