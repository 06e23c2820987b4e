"""What `margin tune promote` refuses before any call, each naming the problem: a job that has not
succeeded, an adapter missing, a group without an eval set, no deployment serving the adapter (the
message shows what to add), a local deployment serving another adapter, an empty test split."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from margin.config.loader import parse_config
from margin.config.model import MarginConfig
from margin.tuning.dataset import DatasetManifest, example_id, write_dataset
from margin.tuning.errors import PromotionRefused
from margin.tuning.jobs import create_job, update_job
from margin.tuning.promote import plan_promotion
from margin.tuning.settings import TrainSettings


def _config(tmp: Path, *, eval_set: bool = True, lora: str | None = None) -> MarginConfig:
    rollout = f"    rollout: {{eval_set: '{tmp / 'set.jsonl'}'}}\n" if eval_set else ""
    local = f", local: {{lora_path: '{lora}'}}" if lora else ""
    return parse_config(
        "deployments:\n"
        "  - {name: cheap, provider: fake, model: c}\n"
        "  - {name: premium, provider: fake, model: p}\n"
        f"  - {{name: student, provider: local, model: s{local}}}\n"
        "models:\n"
        "  - name: support\n"
        "    tiers: [{name: cheap, deployments: [cheap]}, {name: premium, deployments: [premium]}]\n" + rollout
    )  # fmt: skip


def _dataset(tmp: Path, test: int = 3) -> None:
    def example(i: int) -> dict[str, object]:
        messages = [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]
        return {"messages": messages, "id": example_id(messages)}

    splits = {"train": [example(i) for i in range(10)], "test": [example(100 + i) for i in range(test)]}
    manifest = DatasetManifest("ds", "prompts", "support", None, "premium", time.time(), {"train": 10, "test": test})
    write_dataset(tmp, manifest, splits)


def _job(tmp: Path, state: str = "succeeded", adapter: bool = True) -> tuple[str, Path]:
    directory = create_job(tmp, dataset="ds", base="local", settings=TrainSettings())
    gguf = directory / "adapter.gguf"
    if adapter:
        gguf.write_bytes(b"GGUF\x03\x00\x00\x00")
    update_job(directory, state=state, adapter_gguf=str(gguf) if adapter else None)
    return directory.name, gguf


def test_a_succeeded_job_with_a_serving_deployment_is_planned(tmp_path: Path) -> None:
    _dataset(tmp_path)
    job, gguf = _job(tmp_path)
    plan = plan_promotion(_config(tmp_path, lora=str(gguf)), tmp_path, job, "support")
    assert plan.arms == {"student": "student", "cheap": "cheap", "teacher": "premium"}
    assert plan.eval_sets["test_split"].read_text().count("\n") == 3


@pytest.mark.parametrize("state", ["queued", "running", "failed"])
def test_a_job_that_did_not_succeed_is_refused(tmp_path: Path, state: str) -> None:
    _dataset(tmp_path)
    job, gguf = _job(tmp_path, state=state)
    with pytest.raises(PromotionRefused, match=f"job '{job}' is {state}.*only a succeeded job"):
        plan_promotion(_config(tmp_path, lora=str(gguf)), tmp_path, job, "support")


def test_missing_adapter_eval_set_and_deployment_are_named(tmp_path: Path) -> None:
    _dataset(tmp_path)
    job, gguf = _job(tmp_path)
    with pytest.raises(PromotionRefused, match=r"'support' has no eval set \(models\[support\].rollout.eval_set\)"):
        plan_promotion(_config(tmp_path, eval_set=False, lora=str(gguf)), tmp_path, job, "support")
    with pytest.raises(PromotionRefused, match=r"(?s)no configured deployment serves .*lora_path"):
        plan_promotion(_config(tmp_path), tmp_path, job, "support")
    with pytest.raises(PromotionRefused, match="'student' serves another adapter"):
        plan_promotion(_config(tmp_path, lora=str(tmp_path / "other.gguf")), tmp_path, job, "support", "student")
    other = _config(tmp_path, lora=str(gguf)).model_copy(deep=True)
    renamed = other.models[0].model_copy(update={"name": "sales"})
    with pytest.raises(PromotionRefused, match="learned dataset 'ds' of model group 'support', not 'sales'"):
        plan_promotion(other.model_copy(update={"models": [renamed]}), tmp_path, job, "sales")
    with pytest.raises(PromotionRefused, match="unknown model group 'nobody'"):
        plan_promotion(_config(tmp_path, lora=str(gguf)), tmp_path, job, "nobody")
    gguf.write_bytes(b"")
    with pytest.raises(PromotionRefused, match=r"adapter .* is missing or empty"):
        plan_promotion(_config(tmp_path, lora=str(gguf)), tmp_path, job, "support")


def test_an_empty_test_split_is_refused(tmp_path: Path) -> None:
    _dataset(tmp_path, test=0)
    job, gguf = _job(tmp_path)
    with pytest.raises(PromotionRefused, match="empty test split"):
        plan_promotion(_config(tmp_path, lora=str(gguf)), tmp_path, job, "support")
