"""`margin tune promote JOB --group G` (docs/tuning.md, "Promotion"): a succeeded job's adapter,
served by a configured deployment, is gated on the group's eval set and the dataset's test split
(student vs the current cheap deployment under the group's `gates:`, and vs the teacher), then,
only on a pass, a rollout starts (shadow, canary, automatic rollback: the gateways take over).
Exit status: 0 rollout started, 1 the gate rejected the student (nothing changed), 2 refused before
any call (a job not succeeded, no eval set, no deployment serving the adapter ...)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import orjson

from margin.cli.help import examples
from margin.cli.report import CONFIG_OPTION, load_margin_config
from margin.cli.rollouts import RolloutCliError, actor, echo_record, with_service
from margin.config.defaults import resolve_data_dir
from margin.config.environment import EVAL_API_KEY
from margin.config.model import MarginConfig
from margin.errors import ConfigError, MarginError
from margin.evals.render import comparison_json, render_comparison
from margin.evals.results import RunResults, read_results
from margin.rollout.views import record_view
from margin.tuning.outcomes import router_rows, write_router_rows
from margin.tuning.promote import ARMS, PromotionPlan, SetVerdict, judge_set, plan_promotion

ROUTER_FILE = "router-outcomes.jsonl"


@click.command(
    "promote",
    epilog=examples(
        "margin tune promote support-2026-12-07-20261207-101500-ab12cd --group support --config margin.yaml",
        "margin tune promote JOB --group support --url http://127.0.0.1:8080 --api-key sk-margin-...",
        "# a model server (vLLM, llama-server) that loads the adapter itself",
        "margin tune promote JOB --group support --candidate support-student-vllm --url URL",
    ),
)
@click.argument("job")
@click.option("--group", required=True, help="The model group whose cheap tier the student may replace.")
@click.option("--candidate", default=None, help="The deployment serving the adapter (default: found by lora_path).")
@click.option("--url", default=None, help="Run the gate through a running margin (default: in-process).")
@click.option("--api-key", envvar=EVAL_API_KEY.name, default=None, help="Virtual key for the gate's calls.")
@click.option("--concurrency", type=click.IntRange(1, 256), default=None, help="Default: tuning.promotion.")
@CONFIG_OPTION
def promote(
    job: str, group: str, candidate: str | None, url: str | None, api_key: str | None, concurrency: int | None,
    config_path: Path | None,
) -> None:  # fmt: skip
    """Gate JOB's student and, on a pass, start its rollout on GROUP."""
    config = load_margin_config(config_path)
    try:
        plan = plan_promotion(config, resolve_data_dir(config), job, group, candidate)
    except MarginError as exc:
        raise RolloutCliError(exc.message) from None
    _no_live_rollout(config, plan.group.name)
    verdicts = [
        _gate_set(plan, label, path, url, config_path, api_key, concurrency or config.tuning.promotion.concurrency,
                  config.tuning.promotion.min_teacher_ratio)
        for label, path in plan.eval_sets.items()
    ]  # fmt: skip
    record = {label: _verdict_json(v) for label, v in zip(plan.eval_sets, verdicts, strict=True)}
    (plan.work_dir / "verdict.json").write_bytes(orjson.dumps(record, option=orjson.OPT_INDENT_2))
    rows = [row for label, path in plan.eval_sets.items() for row in router_rows(path, label, *_arm_runs(plan, label))]
    click.echo(f"router outcomes (margin router train --add): {write_router_rows(plan.work_dir / ROUTER_FILE, rows)}")
    failed = [reason for v in verdicts for reason in v.reasons()]
    if failed:
        click.echo("gate failed, nothing changed:\n  " + "\n  ".join(failed), err=True)
        raise SystemExit(1)
    who = actor()
    reason = f"tuning job {job}: student {plan.arms['student']} passed the gate on " + ", ".join(plan.eval_sets)
    started = with_service(config, lambda s: s.start(plan.group.name, plan.arms["student"], stable=plan.arms["cheap"],
                                                     actor=who, reason=reason))  # fmt: skip
    gated = with_service(config, lambda s: s.record_gate(started.rollout_id, passed=True, actor=who, reason=reason,
                                                         verdict=record))  # fmt: skip
    echo_record(record_view(gated))


def _out(plan: PromotionPlan, label: str, arm: str) -> Path:
    return plan.work_dir / f"{label}.{plan.arms[arm]}.results.jsonl"


def _arm_runs(plan: PromotionPlan, label: str) -> tuple[RunResults, RunResults]:
    """The student's and the teacher's results on one set."""
    return read_results(_out(plan, label, "student")), read_results(_out(plan, label, "teacher"))


def _no_live_rollout(config: MarginConfig, group: str) -> None:
    recent = with_service(config, lambda s: s.store.recent(model_group=group, limit=5))
    live = [r for r in recent if not r.terminal]
    if live:
        raise RolloutCliError(
            f"model group {group!r} already has a rollout in progress ({live[0].rollout_id}, {live[0].state}): "
            "let it end or abort it first (nothing was run)"
        )


def _gate_set(
    plan: PromotionPlan, label: str, path: Path, url: str | None, config_path: Path | None, api_key: str | None,
    concurrency: int, min_ratio: float,
) -> SetVerdict:  # fmt: skip
    from margin.cli.eval_run import RunRequest, execute_run

    runs: dict[str, RunResults] = {}
    for arm in ARMS:
        deployment, out = plan.arms[arm], _out(plan, label, arm)
        request = RunRequest(
            eval_set=str(path), model=deployment, url=url, config_path=config_path, api_key=api_key,
            concurrency=concurrency, out=out, stream=False, retry_errors=True,
        )  # fmt: skip
        try:
            execute_run(request)
        except (MarginError, ConfigError) as exc:
            why = f"the gate could not run {label} on {deployment}: {exc.message} (nothing changed)"
            raise RolloutCliError(why) from None
        runs[arm] = read_results(out)
    verdict = judge_set(label, runs, plan.group.gates, min_ratio)
    names = (f"{plan.arms['cheap']} (cheap)", f"{plan.arms['student']} (student)")
    click.echo(render_comparison(verdict.vs_cheap, verdict.gates, "table", names))
    ratio = "n/a" if verdict.ratio is None else f"{verdict.ratio:.1%}"
    click.echo(f"{label}: student vs teacher {plan.arms['teacher']}: {ratio} of its mean score "
               f"(at least {min_ratio:.0%}): {'pass' if verdict.passed else 'FAIL'}\n")  # fmt: skip
    return verdict


def _verdict_json(verdict: SetVerdict) -> dict[str, Any]:
    return {
        "passed": verdict.passed,
        "vs_cheap": comparison_json(verdict.vs_cheap, verdict.gates, ("cheap", "student")),
        "teacher_ratio": verdict.ratio,
        "min_teacher_ratio": verdict.min_ratio,
        "teacher_mean": verdict.vs_teacher.baseline.quality.mean,
        "student_mean": verdict.vs_teacher.candidate.quality.mean,
    }
