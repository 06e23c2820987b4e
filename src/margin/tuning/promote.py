"""Promotion of a trained student (docs/tuning.md, "Promotion"): what must hold before a finished
adapter becomes a candidate, the eval sets the gate runs (the group's own eval set and the dataset's
held-out test split, graded against the teacher's answers), and the verdict over three arms: the
student against the current cheap deployment (the group's `gates:`, non-inferiority) and against the
teacher (at least `tuning.promotion.min_teacher_ratio` of its mean score on every set).

This module decides; it changes nothing. The CLI runs the evals through margin and, on a pass,
starts the rollout (shadow, canary, automatic rollback) through the rollout service."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml

from margin.config.gates import GatesConfig
from margin.config.model import DeploymentConfig, MarginConfig, ModelGroupConfig
from margin.evals.compare import Comparison, compare_runs
from margin.evals.gates import GateVerdict, apply_gates
from margin.evals.results import RunResults
from margin.tuning.dataset import dataset_dir, load_split, read_manifest
from margin.tuning.errors import DatasetError, PromotionRefused, TuningError
from margin.tuning.jobs import ADAPTER_GGUF, JobRecord, find_job, read_job
from margin.tuning.sources import find_group, resolve_teacher

ARMS = ("student", "cheap", "teacher")


@dataclass(frozen=True, slots=True)
class PromotionPlan:
    job: JobRecord
    group: ModelGroupConfig
    adapter: Path
    arms: dict[str, str]  # student | cheap | teacher -> the deployment asked by name
    eval_sets: dict[str, Path]  # a label -> the set (the group's, and the test split written as one)
    work_dir: Path  # where the gate's results are kept


@dataclass(frozen=True, slots=True)
class SetVerdict:
    name: str
    vs_cheap: Comparison
    gates: GateVerdict
    vs_teacher: Comparison
    ratio: float | None  # student mean / teacher mean
    min_ratio: float

    @property
    def passed(self) -> bool:
        return self.gates.passed and self.ratio is not None and self.ratio >= self.min_ratio

    def reasons(self) -> list[str]:
        out = [f"{self.name}: {g.name} vs the cheap tier: {g.detail}" for g in self.gates.failed]
        if self.ratio is None:
            out.append(f"{self.name}: no score against the teacher")
        elif self.ratio < self.min_ratio:
            out.append(f"{self.name}: {self.ratio:.1%} of the teacher's mean score, below {self.min_ratio:.0%}")
        return out


def succeeded_job(data_dir: Path, job_id: str) -> tuple[JobRecord, Path]:
    """The job and its adapter.gguf; PromotionRefused unless it succeeded and the adapter is whole."""
    directory = find_job(data_dir, job_id)
    job = read_job(directory)
    if job.state != "succeeded":
        why = f" ({job.error})" if job.error else ""
        raise PromotionRefused(f"job {job_id!r} is {job.state}{why}: only a succeeded job's adapter can be promoted")
    adapter = Path(job.adapter_gguf) if job.adapter_gguf else directory / ADAPTER_GGUF
    if not adapter.is_file() or adapter.stat().st_size == 0:
        raise PromotionRefused(f"job {job_id!r} succeeded but its adapter {adapter} is missing or empty")
    return job, adapter


def cheap_deployment(group: ModelGroupConfig) -> str:
    """The group's current cheap deployment: its lowest tier's first, else its first."""
    return group.tiers[0].deployments[0] if group.tiers else group.deployments[0]


def student_deployment(config: MarginConfig, adapter: Path, named: str | None) -> DeploymentConfig:
    """The configured deployment that serves the adapter: `named`, or the local deployment whose
    `local.lora_path` is the adapter. A local deployment with another adapter is refused."""
    found = [d for d in config.deployments if _serves(d, adapter)]
    if named is not None:
        chosen = next((d for d in config.deployments if d.name == named), None)
        if chosen is None:
            known = ", ".join(d.name for d in config.deployments) or "none"
            raise PromotionRefused(f"--candidate {named!r} is not a configured deployment (configured: {known})")
        if chosen.provider == "local" and chosen not in found:
            raise PromotionRefused(
                f"deployment {named!r} serves another adapter ({_lora(chosen) or 'none'}), not {adapter}"
            )
        return chosen
    if not found:
        raise PromotionRefused(
            f"no configured deployment serves {adapter}: add one (and a model group for it, so the gate can ask "
            f"it by name), e.g.\n  deployments:\n    - {{name: student, provider: local, model: student, "
            f"local: {{lora_path: '{adapter}'}}}}\n  models:\n    - {{name: student, deployments: [student]}}\n"
            "then run the promotion again (or name a model server that loads it with --candidate)"
        )
    return found[0]


def _lora(deployment: DeploymentConfig) -> str | None:
    return deployment.local.lora_path if deployment.local is not None else None


def _serves(deployment: DeploymentConfig, adapter: Path) -> bool:
    lora = _lora(deployment)
    return deployment.provider == "local" and lora is not None and Path(lora).resolve() == adapter.resolve()


def plan_promotion(
    config: MarginConfig, data_dir: Path, job_id: str, group_name: str, candidate: str | None = None
) -> PromotionPlan:
    """Everything the gate needs, checked before any call: the job, the group's eval set, the
    dataset's test split, the three arms. PromotionRefused / DatasetError name what is missing."""
    job, adapter = succeeded_job(data_dir, job_id)
    try:
        group = find_group(config, group_name)
    except DatasetError as exc:
        raise PromotionRefused(exc.message) from None
    eval_set = group.rollout.eval_set if group.rollout is not None else None
    if not eval_set:
        raise PromotionRefused(
            f"model group {group.name!r} has no eval set (models[{group.name}].rollout.eval_set): the student "
            "cannot be gated, so nothing was promoted"
        )
    manifest = read_manifest(dataset_dir(data_dir, job.dataset))
    if manifest.group is not None and manifest.group not in (group.name, *group.aliases):
        raise PromotionRefused(
            f"job {job_id!r} learned dataset {job.dataset!r} of model group {manifest.group!r}, not {group.name!r}"
        )
    if manifest.teacher is None:
        raise PromotionRefused(f"dataset {job.dataset!r} names no teacher to compare the student with")
    teacher = resolve_teacher(config, manifest.teacher, manifest.group or group.name)
    student = student_deployment(config, adapter, candidate)
    cheap = cheap_deployment(group)
    if student.name == cheap:
        raise PromotionRefused(f"the student {student.name!r} is already the group's cheap deployment")
    work = find_job(data_dir, job_id) / "promotion"
    test_set = write_test_set(data_dir, job.dataset, work, config.tuning.promotion.grader)
    arms = {"student": student.name, "cheap": cheap, "teacher": sorted(teacher.deployments)[0]}
    return PromotionPlan(job, group, adapter, arms, {"eval_set": Path(eval_set), "test_split": test_set}, work)


def write_test_set(data_dir: Path, dataset: str, work: Path, grader: str | dict[str, Any]) -> Path:
    """The dataset's test split as an eval set: each prompt, the teacher's answer as the reference."""
    examples = load_split(dataset_dir(data_dir, dataset), "test")
    if not examples:
        raise PromotionRefused(f"dataset {dataset!r} has an empty test split: the student cannot be gated")
    work.mkdir(parents=True, exist_ok=True)
    items = (
        {"id": e["id"], "messages": e["messages"][:-1], "reference": e["messages"][-1]["content"]} for e in examples
    )
    path = work / f"{dataset}-test.jsonl"
    path.write_bytes(b"".join(orjson.dumps(i) + b"\n" for i in items))
    manifest = {"name": f"{dataset}-test", "version": "1", "grader": grader, "params": {"temperature": 0}}
    path.with_suffix(".yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    return path


def judge_set(
    name: str, runs: dict[str, RunResults], gates: GatesConfig | None, min_ratio: float
) -> SetVerdict:  # fmt: skip
    """One set's verdict from its three runs (student, cheap, teacher)."""
    missing = [a for a in ARMS if a not in runs or not len(runs[a])]
    if missing:
        raise TuningError(f"the gate's {name} produced no results for {', '.join(missing)}")
    chosen = gates or GatesConfig()
    level = chosen.quality.confidence if chosen.quality is not None else 0.95
    vs_cheap = compare_runs(runs["cheap"], runs["student"], level=level, mcnemar=False)
    vs_teacher = compare_runs(runs["teacher"], runs["student"], level=level, mcnemar=False)
    student, teacher = vs_teacher.candidate.quality.mean, vs_teacher.baseline.quality.mean
    ratio = None if student is None or not teacher else student / teacher
    if student is not None and teacher == 0:
        ratio = 1.0  # the teacher scored nothing: the student cannot be worse than it
    return SetVerdict(name, vs_cheap, apply_gates(vs_cheap, chosen), vs_teacher, ratio, min_ratio)
