"""`margin eval sample export GROUP`: the rolling production sample of a model group (`sample:`),
PII already redacted, written as an eval set (JSONL: id, messages, the production answer as the
reference, tags) that `margin eval run` and a judge or embedding grader can use."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import orjson

from margin.cli.help import examples
from margin.cli.report import CONFIG_OPTION, load_margin_config
from margin.cli.rollouts import with_service
from margin.storage.rollouts import SampleRecord


@click.group("sample", epilog=examples("margin eval sample export assistant --out rolling.jsonl"))
def sample() -> None:
    """The rolling eval set kept from production traffic (docs/evals.md, "Production samples")."""


def item(record: SampleRecord) -> dict[str, object]:
    return {
        "id": record.sample_id,
        "messages": record.messages,
        "reference": record.answer,
        "tags": ["production", record.model_group, f"deployment:{record.deployment}"],
    }


@sample.command(
    "export",
    epilog=examples(
        "margin eval sample export assistant --out rolling.jsonl",
        "margin eval run rolling.jsonl --model assistant   # with a judge or embedding grader in its manifest",
    ),
)
@click.argument("group")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Default: stdout.")
@click.option("--limit", type=click.IntRange(1, 10_000_000), default=10_000, show_default=True, help="Newest first.")
@CONFIG_OPTION
def export(group: str, out: Path | None, limit: int, config_path: Path | None) -> None:
    """Write GROUP's production sample as eval-set JSONL."""
    config = load_margin_config(config_path)
    if not any(g.name == group for g in config.models):
        known = ", ".join(g.name for g in config.models) or "none"
        raise click.ClickException(f"unknown model group {group!r} (configured: {known})")
    records = with_service(config, lambda service: service.store.samples(group, limit=limit))
    lines = b"".join(orjson.dumps(item(r)) + b"\n" for r in records)
    if out is None:
        sys.stdout.buffer.write(lines)
    else:
        out.write_bytes(lines)
        click.echo(f"{len(records)} samples of {group!r} written to {out}", err=True)
