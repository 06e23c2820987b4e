"""`margin tune dataset build|show|export|list|prune` (docs/tuning.md, "Datasets"): a thin shell over
margin.tuning. The teacher is asked through a running margin (`--url`) or an in-process one built
from `--config`; every call is tagged `tuning`."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import click
import orjson

from margin.cli.help import examples
from margin.cli.output import echo_json
from margin.cli.report import CONFIG_OPTION, load_margin_config
from margin.config.defaults import resolve_data_dir
from margin.config.environment import EVAL_API_KEY
from margin.config.model import MarginConfig
from margin.errors import ConfigError, MarginError
from margin.evals.wire import Wire
from margin.storage import StorageError
from margin.tuning.build import BuildRequest, Candidate, LiveTeacher, Teacher, TextFilter, build_dataset
from margin.tuning.dataset import SPLITS, DatasetManifest, dataset_dir, list_datasets, load_split, prune_expired
from margin.tuning.dataset import read_manifest as read_dataset_manifest
from margin.tuning.sources import (
    TeacherRoute,
    find_group,
    parse_since,
    read_answered,
    read_prompts,
    resolve_teacher,
    traffic_candidates,
)
from margin.tuning.teacher import BatchTeacher, PurposeWire


@click.group(
    "dataset",
    epilog=examples(
        "margin tune dataset build --group support --teacher premium --since 7d --config margin.yaml",
        "margin tune dataset build --name faq --from-prompts prompts.jsonl --teacher premium --via batch --url URL",
        "margin tune dataset show support-2026-12-07",
        "margin tune dataset export support-2026-12-07 --split train > train.jsonl",
    ),
)
def dataset() -> None:
    """Datasets of the teacher's answers: from traffic, a prompt file, or your own JSONL."""


def _fail(exc: MarginError) -> click.ClickException:
    return click.ClickException(exc.message)


async def _open_wire(config: MarginConfig, url: str | None) -> tuple[Wire, Callable[[], Awaitable[None]]]:
    if url is not None:
        from margin.providers.gateway_client import GatewayClient

        client = GatewayClient(url, timeout_s=600.0)
        return client, client.aclose
    from margin.app import create_app
    from margin.evals.asgi_wire import AsgiWire

    wire = AsgiWire(create_app(config))
    await wire.start()
    return wire, wire.aclose


def _names_and_addresses(config: MarginConfig, group: str | None) -> TextFilter | None:
    """The group's production sample redacts names and addresses (Presidio): so does its dataset.
    (Traffic is already redacted so; a prompt file, its answers and a user JSONL are redacted here.)"""
    settings = find_group(config, group).sample if group is not None else None
    if settings is None or settings.redact.names_and_addresses == "off":
        return None
    from margin.evals.pii import PresidioRedactor

    redactor, chosen = PresidioRedactor(settings.redact.spacy_model), settings.redact

    def more(text: str, found: dict[str, int]) -> str:
        return redactor.redact(text, chosen.entities, chosen.score_threshold, found)

    return more


def _teacher(wire: Wire, route: TeacherRoute, via: str, concurrency: int, poll_s: float) -> Teacher:
    if via == "batch":
        return BatchTeacher(wire, route.model, route.params, poll_s=poll_s)
    from margin.evals.gateway import GatewayTarget

    return LiveTeacher(GatewayTarget(wire), route.model, route.params, concurrency=concurrency)


async def _traffic(config: MarginConfig, group: str, since_s: float, route: TeacherRoute) -> list[Candidate]:
    from margin.storage.rollout_stores import open_rollout_store

    source = config.tuning.source(group)
    if source is None:
        opted = ", ".join(s.group for s in config.tuning.sources) or "none"
        raise click.ClickException(f"model group {group!r} has not opted in to tuning (tuning.sources: {opted})")
    store = open_rollout_store(config.database.url, resolve_data_dir(config))
    try:
        await store.migrate()
        samples = await store.samples(group, limit=source.max_examples)
    finally:
        await store.close()
    if not source.teams:
        candidates, skipped = await traffic_candidates(samples, since=time.time() - since_s, teacher=route)
    else:
        from margin.storage import open_ledger_store

        ledger = open_ledger_store(config.database.url, resolve_data_dir(config))
        try:
            await ledger.migrate()

            async def team_of(request_id: str) -> str | None:
                rows = await ledger.request_rows(request_id)
                return rows[0].team if rows else None

            candidates, skipped = await traffic_candidates(
                samples, since=time.time() - since_s, teacher=route, teams=source.teams, team_of=team_of
            )
        finally:
            await ledger.close()
    if skipped:
        click.echo("left out: " + ", ".join(f"{n} {why}" for why, n in sorted(skipped.items())), err=True)
    return candidates


@dataset.command(
    "build",
    epilog=examples(
        "# from the production sample of `support` (opted in under tuning.sources), premium answering",
        "margin tune dataset build --group support --teacher premium --since 7d --config margin.yaml",
        "# a prompt file answered by the teacher through the batch tier of a running margin",
        "margin tune dataset build --name faq --from-prompts prompts.jsonl --teacher premium --via batch --url URL",
        "margin tune dataset build --name mine --from-jsonl answered.jsonl --group support",
    ),
)
@click.option("--name", default=None, help="Default: GROUP-YYYY-MM-DD (or the file's stem).")
@click.option("--group", default=None, help="The model group (traffic: required; its tiers can teach).")
@click.option("--teacher", default=None, help="A tier of --group, or a model group.")
@click.option("--since", "since", default="7d", show_default=True, help="Traffic: samples kept this recently.")
@click.option("--from-prompts", "prompts", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--from-jsonl", "answered", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--via", type=click.Choice(["live", "batch"]), default="live", show_default=True)
@click.option("--url", default=None, help="A running margin (default: in-process from --config).")
@click.option("--api-key", envvar=EVAL_API_KEY.name, default=None, help="The virtual key (MARGIN_API_KEY).")
@click.option("--concurrency", type=click.IntRange(1, 256), default=4, show_default=True)
@click.option("--poll-s", type=click.FloatRange(0.05, 3600), default=2.0, show_default=True, hidden=True)
@CONFIG_OPTION
def build(
    name: str | None, group: str | None, teacher: str | None, since: str, prompts: Path | None,
    answered: Path | None, via: str, url: str | None, api_key: str | None, concurrency: int, poll_s: float,
    config_path: Path | None,
) -> None:  # fmt: skip
    """Build a dataset (train / validation / test) and print its manifest."""
    config = load_margin_config(config_path)
    if prompts is not None and answered is not None:
        raise click.UsageError("give --from-prompts or --from-jsonl, not both")
    source = "prompts" if prompts else "jsonl" if answered else "traffic"
    if source == "traffic" and group is None:
        raise click.UsageError("--group is required to build from traffic")
    stem = (prompts or answered).stem if (prompts or answered) else group  # type: ignore[union-attr]
    chosen = name or f"{stem}-{time.strftime('%Y-%m-%d', time.gmtime())}"
    manifest = _run_build(config, chosen, source, group, teacher, since, prompts or answered, via, url, api_key,
                          concurrency, poll_s)  # fmt: skip
    echo_json(manifest.to_json())


def build_and_report(
    config: MarginConfig, name: str, group: str, teacher: str, since: str, url: str | None, api_key: str | None
) -> DatasetManifest:
    """A dataset from `group`'s traffic (the drift trigger's fresh data); its manifest printed."""
    manifest = _run_build(config, name, "traffic", group, teacher, since, None, "live", url, api_key, 4, 2.0)
    echo_json(manifest.to_json())
    return manifest


def _run_build(
    config: MarginConfig, name: str, source: str, group: str | None, teacher: str | None, since: str,
    path: Path | None, via: str, url: str | None, api_key: str | None, concurrency: int, poll_s: float,
) -> DatasetManifest:  # fmt: skip
    try:
        return asyncio.run(_build(config, name, source, group, teacher, since, path, via, url, api_key, concurrency,
                                  poll_s))  # fmt: skip
    except (MarginError, ConfigError) as exc:
        raise _fail(exc) from None
    except StorageError as exc:
        raise click.ClickException(f"the store failed: {exc}") from None
    except (ConnectionError, TimeoutError) as exc:
        raise click.ClickException(f"margin cannot be reached: {exc}") from None


async def _build(
    config: MarginConfig, name: str, source: str, group: str | None, teacher_name: str | None, since: str,
    path: Path | None, via: str, url: str | None, api_key: str | None, concurrency: int, poll_s: float,
) -> DatasetManifest:  # fmt: skip
    if group is not None:
        find_group(config, group)
    own = config.tuning.source(group) if group is not None else None
    teacher_name = teacher_name or (own.teacher if own is not None else None)
    if teacher_name is None and source != "jsonl":
        raise click.UsageError("--teacher is required (or tuning.sources[GROUP].teacher)")
    route = resolve_teacher(config, teacher_name, group) if teacher_name is not None else None
    if source == "traffic":
        assert group is not None and route is not None
        candidates = await _traffic(config, group, parse_since(since), route)
    else:
        assert path is not None
        candidates = read_prompts(path) if source == "prompts" else read_answered(path)
    request = BuildRequest(
        name, source, group, team=",".join(own.teams) if own and own.teams else None, teacher=teacher_name,
        retention_days=own.retention_days if own is not None else None,
        settings={"since": since if source == "traffic" else None, "via": via, "file": str(path) if path else None},
        more_redaction=_names_and_addresses(config, group) if source != "traffic" else None,
    )  # fmt: skip
    if route is None or all(c.answer for c in candidates):
        return await build_dataset(resolve_data_dir(config), request, candidates, None, config.tuning)
    wire, close = await _open_wire(config, url)
    try:
        teacher = _teacher(PurposeWire(wire, api_key), route, via, concurrency, poll_s)
        return await build_dataset(resolve_data_dir(config), request, candidates, teacher, config.tuning)
    finally:
        await close()


def _dir(config_path: Path | None, name: str) -> Path:
    config = load_margin_config(config_path)
    try:
        where = dataset_dir(resolve_data_dir(config), name)
        read_dataset_manifest(where)
    except MarginError as exc:
        raise _fail(exc) from None
    return where


@dataset.command("show", epilog=examples("margin tune dataset show support-2026-12-07"))
@click.argument("name")
@CONFIG_OPTION
def show(name: str, config_path: Path | None) -> None:
    """Print a dataset's manifest (where it came from, counts, dedup, redaction, retention)."""
    manifest = read_dataset_manifest(_dir(config_path, name))
    view: dict[str, Any] = {**manifest.to_json(), "total": manifest.total, "expires": manifest.expires}
    echo_json(view)


@dataset.command(
    "export",
    epilog=examples(
        "margin tune dataset export support-2026-12-07 > all.jsonl",
        "margin tune dataset export support-2026-12-07 --split test > test.jsonl",
    ),
)
@click.argument("name")
@click.option("--split", type=click.Choice(SPLITS), default=None, help="Default: every split, train first.")
@CONFIG_OPTION
def export(name: str, split: str | None, config_path: Path | None) -> None:
    """Write the examples as JSONL in the chat format PEFT/TRL read ({"messages": [...]})."""
    where = _dir(config_path, name)
    try:
        examples_ = [e for s in ([split] if split else SPLITS) for e in load_split(where, s)]
    except MarginError as exc:
        raise _fail(exc) from None
    sys.stdout.buffer.write(b"".join(orjson.dumps({"messages": e["messages"]}) + b"\n" for e in examples_))


@dataset.command("list", epilog=examples("margin tune dataset list --config margin.yaml"))
@CONFIG_OPTION
def list_(config_path: Path | None) -> None:
    """Every dataset, newest first."""
    for manifest in list_datasets(resolve_data_dir(load_margin_config(config_path))):
        counts = " ".join(f"{s} {manifest.counts.get(s, 0)}" for s in SPLITS)
        click.echo(f"{manifest.name}  {manifest.source}  group {manifest.group or '-'}  teacher "
                   f"{manifest.teacher or '-'}  {counts}")  # fmt: skip


@dataset.command("prune", epilog=examples("margin tune dataset prune --config margin.yaml   # e.g. daily, from cron"))
@CONFIG_OPTION
def prune(config_path: Path | None) -> None:
    """Delete the datasets past their retention (tuning.sources[].retention_days)."""
    for name in prune_expired(resolve_data_dir(load_margin_config(config_path))):
        click.echo(f"deleted {name}")
