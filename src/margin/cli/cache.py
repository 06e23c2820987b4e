"""`margin cache`: calibrate semantic thresholds, inspect and invalidate the response cache."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

import click
import orjson

from margin.caching.backend import CacheBackend
from margin.caching.backends import open_backend
from margin.caching.entry import CacheStats, Invalidation
from margin.caching.group_settings import policy_for
from margin.caching.semantic.calibrate import CONFIDENCE
from margin.caching.semantic.shadow import RouteShadow, read_records
from margin.caching.semantic.shadow import by_route as shadow_by_route
from margin.cli.cache_calibrate import (
    both,
    calibrate_learned,
    calibrate_pairs,
    fit_learned,
    learned_report,
    refused,
    report,
    shadow_summary,
    shadow_table,
)
from margin.cli.help import examples
from margin.cli.options import config_option, load_margin_config
from margin.config.defaults import resolve_data_dir
from margin.config.model import MarginConfig
from margin.errors import ConfigError

# `--config FILE` and `--data-dir DIR`: where the cache lives
CONFIG_OPTION = config_option(
    "margin config file; its cache section names the store (default: SQLite in the data dir)."
)


@click.group(
    epilog=examples(
        "margin cache stats",
        "margin cache invalidate --model chat",
        "margin cache calibrate pairs.jsonl --target-precision 0.99",
        "margin cache shadow-report --config margin.yaml",
    )
)
def cache() -> None:
    """The response cache: calibration, statistics, invalidation."""


@cache.command(
    epilog=examples(
        "margin cache calibrate pairs.jsonl                      # MiniLM (the `embed` extra)",
        "margin cache calibrate pairs.jsonl --route support --target-precision 0.98 --json",
        "margin cache calibrate --from-shadow --config margin.yaml",
        "margin cache calibrate pairs.jsonl --fit-learned learned.json   # needs scipy (the `evals` extra)",
    )
)
@click.argument(
    "pairs_path", metavar="[PAIRS.jsonl]", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--from-shadow", is_flag=True, help="Calibrate from the shadow record of routes in `mode: shadow`.")
@click.option("--target-precision", type=click.FloatRange(0.5, 1.0, max_open=True), default=0.99, show_default=True)
@click.option(
    "--confidence",
    type=click.FloatRange(0.5, 1.0, max_open=True),
    default=CONFIDENCE,
    show_default=True,
    help="One-sided confidence of the precision's lower bound.",
)
@click.option("--route", "routes", multiple=True, help="Calibrate only these routes (model groups).")
@click.option("--embedder", type=click.Choice(["minilm", "hashing"]), default="minilm", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--fit-learned",
    "learned_out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Fit the learned decision (semantic: {decision: learned}) on the pairs and write it here.",
)
@CONFIG_OPTION
@click.pass_context
def calibrate(
    ctx: click.Context,
    pairs_path: Path | None,
    from_shadow: bool,
    target_precision: float,
    confidence: float,
    routes: tuple[str, ...],
    embedder: str,
    as_json: bool,
    learned_out: Path | None,
    config_path: Path | None,
) -> None:
    """Pick per-route semantic thresholds from labelled pairs ({"a","b","same","route"} per line),
    or, with --from-shadow, from what routes in shadow mode recorded of their own traffic.

    Pairs are deduplicated first. A threshold is recommended only where the one-sided lower
    confidence bound of the served hits' precision reaches the target; a route that cannot get
    there is refused (exit status 1) with the number of further labelled pairs it would take."""
    if (pairs_path is None) != from_shadow:
        raise click.UsageError("give PAIRS.jsonl or --from-shadow (one of them)")
    if learned_out is not None:
        if pairs_path is None:
            raise click.UsageError("--fit-learned needs PAIRS.jsonl (the shadow record keeps no question texts)")
        _require_scipy()
        fitted, text = fit_learned(
            pairs_path, learned_out, target=target_precision, confidence=confidence, routes=routes, embedder=embedder
        )
        click.echo(text)
        ctx.exit(1 if fitted.recommended is None else 0)
    if from_shadow:
        _from_shadow(ctx, config_path, routes, target_precision, confidence, as_json)
        return
    assert pairs_path is not None
    results, dedup = calibrate_pairs(
        pairs_path, target=target_precision, confidence=confidence, routes=routes, embedder=embedder
    )
    click.echo(report(results, dedup, target=target_precision, confidence=confidence, as_json=as_json))
    if refused(results):
        ctx.exit(1)


def _from_shadow(
    ctx: click.Context,
    config_path: Path | None,
    routes: tuple[str, ...],
    target: float,
    confidence: float,
    as_json: bool,
) -> None:
    """Each route in its own decision variable: the cosine threshold (guarded and cosine-only), or
    `min_probability` for a route with `decision: learned` (from the probabilities the record keeps)."""
    config = load_margin_config(config_path)
    shadow = _shadow_routes(config_path, routes)
    learned_routes = {r for r in shadow if _is_learned(config, r)}
    results = {r: both(s.graded, target, confidence) for r, s in sorted(shadow.items()) if r not in learned_routes}
    learned = calibrate_learned({r: shadow[r] for r in learned_routes}, target, confidence)
    parts = [report(results, None, target=target, confidence=confidence, as_json=as_json)] if results else []
    if learned:
        parts.append(learned_report(learned, as_json=as_json))
    if as_json and len(parts) == 2:  # one JSON object: cosine routes and learned routes side by side
        merged = {**orjson.loads(parts[0]), **orjson.loads(parts[1])}
        parts = [orjson.dumps(merged, option=orjson.OPT_INDENT_2).decode()]
    click.echo("\n\n".join(parts))
    if refused(results) or any(c.recommended is None for c in learned.values()):
        ctx.exit(1)


def _is_learned(config: MarginConfig, route: str) -> bool:
    semantic = policy_for(config.cache, route).semantic
    return semantic is not None and semantic.learned is not None


def _require_scipy() -> None:
    if importlib.util.find_spec("scipy") is None:
        raise click.ClickException(
            "--fit-learned needs the `evals` extra (scipy is not installed): pip install 'margin[evals]'"
        )


@cache.command(
    "shadow-report",
    epilog=examples("margin cache shadow-report --config margin.yaml", "margin cache shadow-report --json"),
)
@CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def shadow_report(config_path: Path | None, as_json: bool) -> None:
    """Per route in the shadow record: lookups, would-be hits at the route's configured decision (the
    cosine threshold, guard applied, or min_probability for `decision: learned`) and how many of them
    agreed with the fresh answer, with the precision's 95% lower bound."""
    config = load_margin_config(config_path)
    rows = [
        shadow_summary(s, policy_for(config.cache, route).semantic)
        for route, s in sorted(_shadow_routes(config_path, ()).items())
    ]
    click.echo(shadow_table(rows, as_json=as_json))


def _shadow_routes(config_path: Path | None, routes: tuple[str, ...]) -> dict[str, RouteShadow]:
    config = load_margin_config(config_path)
    path = Path(config.cache.shadow_path.replace("{data_dir}", str(resolve_data_dir(config))))
    if not path.exists():
        raise click.ClickException(f"no shadow record at {path}: put a route in `semantic: {{mode: shadow}}` first")
    found = {r: s for r, s in shadow_by_route(read_records(path)).items() if not routes or r in routes}
    if not found:
        raise click.ClickException("the shadow record has nothing for the requested routes")
    return found


@cache.command(
    epilog=examples("margin cache stats", "margin cache stats --config margin.yaml --data-dir /var/lib/margin")
)
@CONFIG_OPTION
def stats(config_path: Path | None) -> None:
    """Entries, bytes and vectors in the configured cache store."""
    result = asyncio.run(_stats(_backend(load_margin_config(config_path))))
    click.echo(f"entries {result.entries}  bytes {result.bytes}  vectors {result.vectors}")
    for model, count in sorted(result.by_model.items()):
        click.echo(f"  {model}: {count}")


async def _stats(backend: CacheBackend) -> CacheStats:
    try:
        return await backend.stats()
    finally:
        await backend.close()


@cache.command(
    epilog=examples(
        "margin cache invalidate --model chat",
        "margin cache invalidate --tenant team:acme/search --tag feature:faq",
        "margin cache invalidate --all --config margin.yaml",
    )
)
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
    dropped = asyncio.run(_invalidate(_backend(load_margin_config(config_path)), selector))
    click.echo(f"dropped {dropped} entries")


async def _invalidate(backend: CacheBackend, selector: Invalidation) -> int:
    try:
        return len(await backend.invalidate(selector))
    finally:
        await backend.close()


def _backend(config: MarginConfig) -> CacheBackend:
    """The gateway's backend (a memory cache outlives no process: an empty view, for symmetry)."""
    try:
        return open_backend(config.cache, data_dir=resolve_data_dir(config), redis=config.redis)
    except ConfigError as error:
        raise click.ClickException(error.message) from None
