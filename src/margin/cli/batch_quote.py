"""`margin batch quote FILE`: the worst-case and expected cost of a batch on each deployment that may
answer it, from the config's prices and the ledger's history, before anything runs (no gateway)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
import orjson

from margin.app import price_book
from margin.batch.quote import Quote, Quoter
from margin.cli.options import load_margin_config
from margin.cli.report import open_configured_store
from margin.config import embedded_default
from margin.config.model import MarginConfig
from margin.storage.protocols import StorageError

HISTORY_S = 30 * 86_400


async def mean_output_tokens(config: MarginConfig) -> dict[str, float]:
    """Output tokens per successful request, per deployment, over the last 30 days of the ledger
    (empty when there is no ledger yet or it cannot be read: the quote then says so)."""
    store = open_configured_store(config)
    try:
        now = time.time()
        rows = await store.spend_report(now - HISTORY_S, now, "deployment")
    except StorageError:
        return {}
    finally:
        await store.close()
    means = {}
    for row in rows:
        if row.successful:
            means[row.group] = (row.tokens.get("output", 0) + row.tokens.get("output_reasoning", 0)) / row.successful
    return means


def _read(path: Path) -> Iterator[dict[str, Any]]:
    """The file's JSON lines, one at a time (a 200 MB file is never held whole)."""
    with path.open("rb") as file:
        for number, raw in enumerate(file, start=1):
            if not raw.strip():
                continue
            try:
                line = orjson.loads(raw)
            except orjson.JSONDecodeError:
                raise click.ClickException(f"{path}:{number}: not a JSON line") from None
            if isinstance(line, dict):
                yield line


def _usd(amount: Decimal | None) -> str:
    return "n/a" if amount is None else f"${amount:,.6f}"


def render(quote: Quote) -> str:
    rows = sorted(quote.tiers.values(), key=lambda t: (t.cost_rank is None, t.cost_rank, t.deployment))
    out = [f"{quote.lines:,} requests", f"{'deployment':<24} {'rank':>4} {'lines':>7} {'input tok':>11} "
           f"{'worst-case':>16} {'expected':>16}"]  # fmt: skip
    for tier in rows:
        worst = _usd(tier.worst_usd) if tier.priced else "unpriced"
        expected = _usd(tier.expected_usd) if tier.priced else "unpriced"
        rank = "-" if tier.cost_rank is None else str(tier.cost_rank)
        native = "  native: the provider's Batch API, at its batch price" if tier.native else ""
        out.append(
            f"{tier.deployment:<24} {rank:>4} {tier.lines:>7,} {tier.input_tokens:>11,} {worst:>16} {expected:>16}"
            + native
        )
    if any(t.expected_usd is None for t in rows):
        out.append("expected n/a: no ledger history for that deployment; pass --expected-output-tokens N to assume one")
    for model, count in sorted(quote.unroutable.items()):
        out.append(f"{count:,} lines ask for {model!r}, which no model group serves: they would fail (404)")
    return "\n".join(out)


def run_quote(file: Path, expected_output_tokens: int | None, config_path: Path | None) -> None:
    config = load_margin_config(config_path, default=embedded_default)
    means = asyncio.run(mean_output_tokens(config)) if expected_output_tokens is None else {}
    quoter = Quoter(config, price_book(config), mean_output=means, expected_output=expected_output_tokens)
    click.echo(render(quoter.quote(_read(file))))
