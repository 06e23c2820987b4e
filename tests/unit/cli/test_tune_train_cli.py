"""`margin tune train|resume|status|job` refusals: each names the problem, exits 2, starts nothing
(no model is loaded, so these run in a second)."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner

from margin.cli import main
from margin.tuning import jobs
from margin.tuning.examples import tickets
from margin.tuning.settings import TrainSettings


def _tune(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["tune", *args, "--data-dir", str(tmp_path)])
    return result.exit_code, result.stdout, result.stderr


def test_train_refuses_a_missing_or_tiny_dataset_and_bad_settings(tmp_path: Path) -> None:
    code, _, err = _tune(tmp_path, "train", "--dataset", "nothing")
    assert code == 2 and "no dataset at" in err
    tickets.write(tmp_path, "tiny", tickets.generate(2, 1, 1, seed=1), seed=1)
    code, _, err = _tune(tmp_path, "train", "--dataset", "tiny")
    assert code == 2 and "'tiny' has 2 training example(s); at least 4 are needed" in err
    code, _, err = _tune(tmp_path, "train", "--dataset", "tiny", "--steps", "0")
    assert code == 2 and "--steps:" in err
    code, _, err = _tune(tmp_path, "train", "--dataset", "tiny", "--window", "night")
    assert code == 2 and "HH:MM-HH:MM" in err
    assert not jobs.jobs_root(tmp_path).exists()


def test_status_resume_and_emit_name_the_job(tmp_path: Path) -> None:
    code, _, err = _tune(tmp_path, "status")
    assert code == 0 and "no training jobs" in err
    code, _, err = _tune(tmp_path, "resume", "nope")
    assert code == 2 and "no training job 'nope'" in err
    tickets.write(tmp_path, "t", tickets.generate(8, 1, 1, seed=1), seed=1)
    job = jobs.create_job(tmp_path, dataset="t", base="local", settings=TrainSettings(steps=4, save_steps=2))
    code, out, _ = _tune(tmp_path, "status", "--json")
    assert code == 0 and '"state": "queued"' in out
    code, out, _ = _tune(tmp_path, "job", "--emit", "k8s", job.name)
    assert code == 0 and yaml.safe_load(out)["kind"] == "Job"
    code, _, err = _tune(tmp_path, "job", "--emit", "skypilot", job.name)
    assert code == 2 and "needs --bucket" in err
    jobs.update_job(job, state="succeeded", adapter_gguf=str(job / jobs.ADAPTER_GGUF))
    code, out, err = _tune(tmp_path, "resume", job.name)
    assert code == 0 and "already succeeded" in err and out.strip() == str(job / jobs.ADAPTER_GGUF)
