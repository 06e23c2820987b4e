"""`margin rollout start|status|promote|pause|resume|abort|history`: rollouts straight in the
configured database (the store every gateway reads; running gateways apply a change within
`rollouts.refresh_s`). Exit status: 0 done, 1 the offline gate rejected the candidate, 2 the command
could not do what was asked (the message says why)."""

from __future__ import annotations

import asyncio
import getpass
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from margin.cli.help import examples
from margin.cli.output import echo_json
from margin.cli.report import CONFIG_OPTION, load_margin_config
from margin.config.defaults import resolve_data_dir
from margin.config.model import MarginConfig
from margin.errors import ConfigError, MarginError
from margin.rollout.service import RolloutService
from margin.rollout.views import record_view, status_view, transition_view
from margin.storage import StorageError
from margin.storage.rollout_stores import open_rollout_store

T = TypeVar("T")


class RolloutCliError(click.ClickException):
    exit_code = 2


def actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name for this uid (containers)
        return "cli:unknown"


def with_service(config: MarginConfig, work: Callable[[RolloutService], Awaitable[T]]) -> T:
    try:
        store = open_rollout_store(config.database.url, resolve_data_dir(config))
    except ConfigError as exc:
        raise RolloutCliError(exc.message) from None

    async def go() -> T:
        try:
            await store.migrate()
            return await work(RolloutService(store, config))
        finally:
            await store.close()

    try:
        return asyncio.run(go())
    except StorageError as exc:
        raise RolloutCliError(f"the rollout store failed: {exc}") from None
    except MarginError as exc:
        raise RolloutCliError(exc.message) from None


def echo_record(view: dict[str, Any]) -> None:
    step = f" step {view['step']}/{view['steps']}" if view.get("step") else ""
    paused = " (paused)" if view.get("paused") else ""
    click.echo(
        f"{view['rollout_id']}  {view['model_group']}: {view['stable']} -> {view['candidate']}  "
        f"{view['state']}{step}{paused}  candidate share {view['candidate_share']:.0%}"
    )
    click.echo(f"  {view['reason']}")


@click.group(
    "rollout",
    epilog=examples(
        "margin rollout start chat --candidate chat-v2 --config margin.yaml",
        "margin rollout status",
        "margin rollout promote chat --reason 'canary looks fine'",
        "margin rollout abort chat --reason 'latency regression'",
    ),
)
def rollout() -> None:
    """Move a model group from its stable deployment to a candidate: offline gate, shadow, canary
    steps, automatic rollback (docs/rollouts.md)."""


@rollout.command(
    "start",
    epilog=examples(
        "margin rollout start chat --candidate chat-v2 --config margin.yaml      # runs the offline gate first",
        "margin rollout start chat --candidate chat-v2 --url http://127.0.0.1:8080 --api-key sk-margin-...",
    ),
)
@click.argument("group")
@click.option("--candidate", required=True, help="The deployment that replaces the stable one.")
@click.option("--stable", default=None, help="The deployment it replaces (default: the group's first).")
@click.option("--eval-set", default=None, help="The gate's eval set (default: the group's rollout.eval_set).")
@click.option("--skip-gate", is_flag=True, help="Start without the offline gate (recorded in the audit trail).")
@click.option("--url", default=None, help="Run the gate through a running margin (default: in-process).")
@click.option("--api-key", envvar="MARGIN_API_KEY", default=None, help="Virtual key for the gate's calls.")
@click.option("--concurrency", type=click.IntRange(1, 256), default=4, show_default=True)
@CONFIG_OPTION
def start(
    group: str, candidate: str, stable: str | None, eval_set: str | None, skip_gate: bool, url: str | None,
    api_key: str | None, concurrency: int, config_path: Path | None,
) -> None:  # fmt: skip
    """Start a rollout of CANDIDATE on GROUP: the offline gate first, then the gateways take over."""
    from margin.cli.rollout_gate import GateRun, run_gate
    from margin.evals.errors import EvalError

    config = load_margin_config(config_path)
    who = actor()
    record = with_service(config, lambda s: s.start(group, candidate, stable=stable, actor=who))
    echo_record(record_view(record))
    if skip_gate:
        reason = f"offline gate skipped by {who}"
        gated = with_service(config, lambda s: s.record_gate(record.rollout_id, passed=True, actor=who, reason=reason,
                                                             verdict={"skipped": True}))  # fmt: skip
        echo_record(record_view(gated))
        return
    group_config = next(g for g in config.models if g.name == record.model_group)
    chosen = eval_set or (group_config.rollout.eval_set if group_config.rollout else None)
    if chosen is None:
        with_service(config, lambda s: s.abort(record.rollout_id, actor=who, reason="no eval set for the offline gate"))
        raise RolloutCliError(
            f"model group {group!r} has no rollout.eval_set: give --eval-set SET, or --skip-gate (rollout aborted)"
        )
    run = GateRun(
        chosen, url, config_path, api_key, concurrency, resolve_data_dir(config) / "rollouts" / record.rollout_id
    )
    try:
        outcome = run_gate(record, group_config, run)
    except (EvalError, ConfigError) as exc:
        why = f"offline gate could not run: {exc.message}"
        with_service(config, lambda s: s.abort(record.rollout_id, actor=who, reason=why))
        raise RolloutCliError(f"{exc.message} (rollout {record.rollout_id} aborted)") from None
    click.echo(outcome.report)
    gated = with_service(
        config, lambda s: s.record_gate(record.rollout_id, passed=outcome.passed, actor=who, reason=outcome.reason,
                                        verdict=outcome.verdict),
    )  # fmt: skip
    echo_record(record_view(gated))
    if not outcome.passed:
        raise SystemExit(1)


@rollout.command(
    "status", epilog=examples("margin rollout status", "margin rollout status chat --json --config margin.yaml")
)
@click.argument("ref", required=False)
@click.option("--json", "as_json", is_flag=True)
@CONFIG_OPTION
def status(ref: str | None, as_json: bool, config_path: Path | None) -> None:
    """A rollout (id or group) with its analysis; without REF, every rollout in progress."""
    config = load_margin_config(config_path)

    async def work(service: RolloutService) -> list[dict[str, Any]]:
        records = [await service.find(ref)] if ref else [r for r in await service.store.current() if not r.terminal]
        return [status_view(r, await service.store.windows(r.rollout_id), time.time()) for r in records]

    views = with_service(config, work)
    if as_json:
        echo_json(views if ref is None else views[0])
        return
    if not views:
        click.echo("no rollout in progress")
    for view in views:
        echo_record(view)
        if "next" in view:
            click.echo(f"  next: {view['next']['action']}: {view['next']['reason']}")
        for signal in view.get("analysis", {}).get("signals", []):
            low, high = signal["interval"]
            click.echo(
                f"  {signal['signal']:<16} {signal['verdict']:<12} stable {signal['stable']}  candidate "
                f"{signal['candidate']}  worse by {signal['worse_by']} [{low}, {high}] (margin {signal['margin']})"
            )
        for arm, summary in view.get("analysis", {}).get("arms", {}).items():
            if summary.get("judge"):  # the online judge's outcomes on this arm's answers
                counts = "  ".join(f"{outcome} {n}" for outcome, n in summary["judge"].items())
                click.echo(f"  judge on {arm:<10} {counts}")


def _operator(name: str, doc: str, call: Callable[[RolloutService, str, str, str], Awaitable[Any]]) -> None:
    @rollout.command(name, help=doc, epilog=examples(f"margin rollout {name} chat --reason 'why, for the audit'"))
    @click.argument("ref")
    @click.option("--reason", default="", help="Why (kept in the audit trail).")
    @CONFIG_OPTION
    def command(ref: str, reason: str, config_path: Path | None) -> None:
        config = load_margin_config(config_path)
        who = actor()
        echo_record(record_view(with_service(config, lambda s: call(s, ref, who, reason))))


_operator("pause", "Freeze a rollout where it is (automatic rollback still watches).",
          lambda s, ref, who, why: s.pause(ref, actor=who, reason=why))  # fmt: skip
_operator("resume", "Let a paused rollout move forward again.",
          lambda s, ref, who, why: s.resume(ref, actor=who, reason=why))  # fmt: skip
_operator("abort", "End a rollout: all traffic back to stable on every replica.",
          lambda s, ref, who, why: s.abort(ref, actor=who, reason=why))  # fmt: skip


@rollout.command(
    "promote",
    epilog=examples("margin rollout promote chat", "margin rollout promote chat --full --reason 'signed off'"),
)
@click.argument("ref")
@click.option("--full", is_flag=True, help="Straight to promoted (skip the remaining steps).")
@click.option("--reason", default="")
@CONFIG_OPTION
def promote(ref: str, full: bool, reason: str, config_path: Path | None) -> None:
    """Move a rollout one stage forward by hand (or all the way with --full)."""
    config = load_margin_config(config_path)
    who = actor()
    echo_record(record_view(with_service(config, lambda s: s.promote(ref, actor=who, full=full, reason=reason))))


@rollout.command("history", epilog=examples("margin rollout history chat", "margin rollout history chat --json"))
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True)
@CONFIG_OPTION
def history(ref: str, as_json: bool, config_path: Path | None) -> None:
    """Every transition of a rollout: when, who or what, why (and, with --json, the metrics)."""
    config = load_margin_config(config_path)
    record, entries = with_service(config, lambda s: s.history(ref))
    if as_json:
        echo_json({"rollout": record_view(record), "transitions": [transition_view(e) for e in entries]})
        return
    echo_record(record_view(record))
    for entry in map(transition_view, entries):
        step = f" step {entry['to_step']}" if entry["to_step"] else ""
        click.echo(
            f"  {entry['at']}  {entry['from'] or '-':>11} -> {entry['to']}{step}  "
            f"by {entry['actor']}: {entry['reason']}"
        )
