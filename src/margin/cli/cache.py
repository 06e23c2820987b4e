"""`margin cache`: calibrate semantic thresholds, inspect and invalidate the response cache."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click
import orjson

from margin.caching.backend import CacheBackend
from margin.caching.backends import open_backend
from margin.caching.entry import CacheStats, Invalidation
from margin.caching.semantic.calibrate import (
    OperatingPoint,
    ScoredPair,
    by_route,
    choose_threshold,
    read_pairs,
    score_pairs,
)
from margin.config import load_config
from margin.config.defaults import resolve_data_dir
from margin.config.model import MarginConfig
from margin.embedding import Embedder, EmbedderUnavailableError, HashingEmbedder, MiniLMEmbedder
from margin.errors import ConfigError

CONFIG_OPTION = click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="margin config file; its cache section names the store (default: SQLite in the data dir).",
)


@click.group()
def cache() -> None:
    """The response cache: calibration, statistics, invalidation."""


@cache.command()
@click.argument("pairs_path", metavar="PAIRS.jsonl", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--target-precision", type=click.FloatRange(0.5, 1.0), default=0.99, show_default=True)
@click.option("--route", "routes", multiple=True, help="Calibrate only these routes (model groups).")
@click.option("--embedder", type=click.Choice(["minilm", "hashing"]), default="minilm", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def calibrate(pairs_path: Path, target_precision: float, routes: tuple[str, ...], embedder: str, as_json: bool) -> None:
    """Pick per-route semantic thresholds from labelled pairs ({"a","b","same","route"} per line)."""
    try:
        pairs = read_pairs(pairs_path)
        model = _embedder(embedder)
    except (ValueError, EmbedderUnavailableError) as error:
        raise click.ClickException(str(error)) from None
    grouped = {r: p for r, p in by_route(pairs).items() if not routes or r in routes}
    if not grouped:
        raise click.ClickException("no labelled pairs for the requested routes")
    results = {}
    for route, route_pairs in sorted(grouped.items()):
        scored = score_pairs(route_pairs, model)
        results[route] = (
            choose_threshold(scored, target_precision, guard=True),
            choose_threshold(scored, target_precision, guard=False),
            scored,
        )
    if as_json:
        click.echo(orjson.dumps({r: _point_json(g, b) for r, (g, b, _) in results.items()}, option=orjson.OPT_INDENT_2))
        return
    click.echo(_calibration_table(results, target_precision))


def _embedder(name: str) -> Embedder:
    if name == "hashing":
        return HashingEmbedder()
    embedder = MiniLMEmbedder(threads=2)
    embedder.load()
    return embedder


def _point_json(guarded: OperatingPoint, plain: OperatingPoint) -> dict[str, object]:
    def one(point: OperatingPoint) -> dict[str, object]:
        return {
            "threshold": round(point.threshold, 4),
            "precision": round(point.precision, 4),
            "precision_lower_95": round(point.precision_lower_bound, 4),
            "hit_rate_of_duplicates": round(point.recall, 4),
            "false_hit_rate": round(point.false_hit_rate, 4),
            "served": point.served,
            "wrong": point.wrong,
        }

    return {"guarded": one(guarded), "cosine_only": one(plain)}


def _calibration_table(
    results: dict[str, tuple[OperatingPoint, OperatingPoint, list[ScoredPair]]], target: float
) -> str:
    lines = [
        f"target precision {target:.3f} (precision = share of served hits that are right; "
        "hit rate = share of true duplicates served)",
        f"{'route':<20} {'mode':<12} {'threshold':>9} {'precision':>9} {'>=95%':>7} {'hit rate':>8} {'wrong':>6} "
        f"{'pairs':>6}",
    ]
    snippet = ["cache:", "  routes:"]
    for route, (guarded, plain, scored) in results.items():
        for mode, point in (("guarded", guarded), ("cosine-only", plain)):
            lines.append(
                f"{route:<20} {mode:<12} {point.threshold:>9.4f} {point.precision:>9.4f} "
                f"{point.precision_lower_bound:>7.3f} {point.recall:>8.3f} {point.wrong:>6} {len(scored):>6}"
            )
        name = "<every route>" if route == "*" else route
        snippet += [
            f"    {name}:",
            "      semantic:",
            "        enabled: true",
            f"        threshold: {min(1.0, round(guarded.threshold, 4))}",
        ]
    return "\n".join([*lines, "", "suggested config:", *snippet])


@cache.command()
@CONFIG_OPTION
def stats(config_path: Path | None) -> None:
    """Entries, bytes and vectors in the configured cache store."""
    result = asyncio.run(_stats(_backend(_config(config_path))))
    click.echo(f"entries {result.entries}  bytes {result.bytes}  vectors {result.vectors}")
    for model, count in sorted(result.by_model.items()):
        click.echo(f"  {model}: {count}")


async def _stats(backend: CacheBackend) -> CacheStats:
    try:
        return await backend.stats()
    finally:
        await backend.close()


@cache.command()
@click.option("--tenant", help="e.g. key:ORG/KEY_ID, team:ORG/TEAM or org:ORG (as scoped by cache.scope)")
@click.option("--model", help="a model group")
@click.option("--tag", help="a key tag")
@click.option("--prefix", "key_prefix", help="a cache-key prefix (keys read TENANT|MODEL|DIGEST)")
@click.option("--all", "everything", is_flag=True, help="drop every entry")
@CONFIG_OPTION
def invalidate(
    tenant: str | None,
    model: str | None,
    tag: str | None,
    key_prefix: str | None,
    everything: bool,
    config_path: Path | None,
) -> None:
    """Drop cached answers by tenant, model group, tag or key prefix (filters combine with AND).

    A running gateway keeps serving its in-process semantic index until it notices the entries are
    gone (on the next candidate lookup); the admin API invalidates both at once."""
    selector = Invalidation(tenant=tenant, model=model, tag=tag, key_prefix=key_prefix, everything=everything)
    if selector.empty:
        raise click.UsageError("give at least one of --tenant, --model, --tag, --prefix, or --all")
    dropped = asyncio.run(_invalidate(_backend(_config(config_path)), selector))
    click.echo(f"dropped {dropped} entries")


async def _invalidate(backend: CacheBackend, selector: Invalidation) -> int:
    try:
        return len(await backend.invalidate(selector))
    finally:
        await backend.close()


def _config(config_path: Path | None) -> MarginConfig:
    try:
        return load_config(config_path) if config_path is not None else MarginConfig()
    except ConfigError as error:
        raise click.ClickException(error.message) from None


def _backend(config: MarginConfig) -> CacheBackend:
    """The gateway's backend (a memory cache outlives no process: an empty view, for symmetry)."""
    try:
        return open_backend(config.cache, data_dir=resolve_data_dir(config), redis=config.redis)
    except ConfigError as error:
        raise click.ClickException(error.message) from None
