"""`margin whatif`: what margin would save on recorded traffic (see docs/whatif.md)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from margin.cli.help import examples
from margin.cli.report import CONFIG_OPTION, WHEN_HELP, load_margin_config, open_configured_store
from margin.storage.protocols import StorageError

if TYPE_CHECKING:
    from margin.config.model import MarginConfig
    from margin.whatif.config import WhatifConfig
    from margin.whatif.ledger_import import LedgerImport
    from margin.whatif.run import Sampler


@click.group(
    epilog=examples(
        "# replay an exported log through the cache and the router; report in ./whatif-out",
        "margin whatif run traffic.jsonl --config candidate.yaml --out whatif-out",
        "# an OpenAI Batch API input file and its output file, as traffic",
        "margin whatif import-batch batch_input.jsonl batch_output.jsonl > traffic.jsonl",
        "# margin's own ledger, with the production sample's bodies where it kept them",
        "margin whatif import-ledger --since 7d --config margin.yaml > traffic.jsonl",
    )
)
def whatif() -> None:
    """Replay recorded traffic through margin's cost levers and report the savings."""


@whatif.command(
    "run",
    epilog=examples(
        "margin whatif run traffic.jsonl --config candidate.yaml --out whatif-out",
        '# with `sampling: {url: http://127.0.0.1:8080, cost_cap_usd: "5"}` in candidate.yaml, a sample',
        "# of the misses is sent to tiers.weak through that margin (tagged whatif) and graded",
        "margin whatif run traffic.jsonl --config candidate.yaml --out whatif-out",
        "# the table only, on stdout",
        "margin whatif run traffic.jsonl --config candidate.yaml --out /tmp/w && cat /tmp/w/report.txt",
    ),
)
@click.argument("traffic", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--config", "config_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Report folder.")
def run(traffic: Path, config_path: Path, out: Path) -> None:
    """Replay TRAFFIC (JSONL of chat-completions pairs) under the candidate config; write report.json,
    report.txt, report.html, report.xlsx and decisions.jsonl to OUT."""
    from margin.errors import ConfigError
    from margin.whatif.config import load_whatif_config
    from margin.whatif.html import render_html
    from margin.whatif.report import report_table, write_report
    from margin.whatif.run import run_whatif
    from margin.whatif.traffic import read_traffic

    try:
        config = load_whatif_config(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    report = run_whatif(read_traffic(traffic), config, _sampler(config))
    write_report(report, out)
    (out / "report.html").write_text(render_html(report), encoding="utf-8")
    try:
        from margin.whatif.xlsx import render_xlsx
    except ModuleNotFoundError:
        click.echo("report.xlsx skipped: pip install 'margin[xlsx]'", err=True)
    else:
        (out / "report.xlsx").write_bytes(render_xlsx(report))
    click.echo(report_table(report), nl=False)


def _sampler(config: WhatifConfig) -> Sampler | None:
    """Live sampling through the margin at `sampling.url` (docs/whatif.md)."""
    sampling = config.sampling
    if sampling is None:
        return None
    from margin.providers.gateway_client import GatewayClient
    from margin.whatif.live import LiveSampler

    return LiveSampler(sampling, lambda: GatewayClient(sampling.url, timeout_s=sampling.timeout_s))


@whatif.command(
    "import-batch",
    epilog=examples(
        "margin whatif import-batch batch_input.jsonl batch_output.jsonl > traffic.jsonl",
        "margin whatif import-batch in.jsonl out.jsonl | margin whatif run /dev/stdin --config c.yaml --out w",
    ),
)
@click.argument("input_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("output_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def import_batch(input_file: Path, output_file: Path) -> None:
    """Join an OpenAI Batch input file and its output file by custom_id into what-if traffic
    (JSONL on stdout); lines that cannot be used are listed on stderr with their line number."""
    import orjson

    from margin.whatif.importers import openai_batch

    imported = openai_batch(input_file, output_file)
    for issue in imported.issues:
        click.echo(issue, err=True)
    for record in imported.records:
        click.echo(orjson.dumps(record).decode())


@whatif.command(
    "import-ledger",
    epilog=examples(
        "# the last 7 days of margin's ledger, bodies from the production sample where it kept them",
        "margin whatif import-ledger --since 7d --config margin.yaml > traffic.jsonl",
        "margin whatif import-ledger --since 2026-11-01 --until 2026-12-01 --group support > traffic.jsonl",
    ),
)
@click.option("--since", default="7d", show_default=True, help=WHEN_HELP)
@click.option("--until", default="now", show_default=True, help=WHEN_HELP)
@click.option("--group", "groups", multiple=True, help="Model groups whose production sample to join (default: all).")
@click.option("--sample-limit", type=click.IntRange(1, 10_000_000), default=100_000, show_default=True,
              help="Newest production samples read per group.")  # fmt: skip
@CONFIG_OPTION
def import_ledger(since: str, until: str, groups: tuple[str, ...], sample_limit: int, config_path: Path | None) -> None:
    """margin's ledger as what-if traffic (JSONL on stdout): each request's final row, with the
    production sample's redacted messages and answer where it kept them; a request without a body is
    written `volume_only` (volume and cost only). Counts go to stderr."""
    import asyncio
    import sys
    from datetime import UTC, datetime

    import orjson

    from margin.ledger.report import parse_when

    config = load_margin_config(config_path)
    now = datetime.now(UTC)
    try:
        start, end = parse_when(since, now).timestamp(), parse_when(until, now).timestamp()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    wanted = list(groups) or [g.name for g in config.models]
    imported = asyncio.run(_read_ledger(config, (start, end), wanted, sample_limit))
    sys.stdout.buffer.write(b"".join(orjson.dumps(record) + b"\n" for record in imported.records))
    sys.stdout.flush()
    skipped = ", ".join(f"{n} {why}" for why, n in sorted(imported.skipped.items())) or "none"
    click.echo(
        f"{len(imported.records)} requests: {imported.with_body} with bodies, {imported.volume_only} volume only; "
        f"left out: {skipped}",
        err=True,
    )


async def _read_ledger(config: MarginConfig, span: tuple[float, float], groups: list[str], limit: int) -> LedgerImport:
    from margin.config.defaults import resolve_data_dir
    from margin.storage.rollout_stores import open_rollout_store
    from margin.whatif.ledger_import import final_rows, join, production_bodies

    ledger = open_configured_store(config)
    samples = open_rollout_store(config.database.url, resolve_data_dir(config))
    try:
        await ledger.migrate()
        await samples.migrate()
        rows = await final_rows(ledger, *span)
        bodies = await production_bodies(samples, groups, limit)
    except StorageError as exc:
        raise click.ClickException(f"cannot read the ledger: {exc}") from None
    finally:
        await ledger.close()
        await samples.close()
    return join(rows, bodies, config.cache.scope)
