"""`margin tune job --emit k8s|skypilot JOB`: the same job for a runner with GPUs that margin does not
orchestrate (docs/tuning.md, "Running on GPUs"). Both run `margin tune resume JOB` against the data
directory on a volume, so a restarted pod or a recovered spot instance goes on from the newest
complete checkpoint; resuming a job that already succeeded exits 0.

- Kubernetes: a batch/v1 Job with the project image (built with the `tune` and `local` extras), the
  data directory on a PersistentVolumeClaim, `restartPolicy: OnFailure` and a backoff limit.
- SkyPilot: a task for `sky jobs launch` (managed job: spot, recovered after a preemption) with the
  data directory mounted from a bucket. SKYPILOT_TASK_SCHEMA is the subset of SkyPilot's documented
  task fields this writes; a test validates the output against it (and the Job with
  kubernetes-validate)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

from margin.tuning.base_model import LOCAL
from margin.tuning.errors import TrainingError
from margin.tuning.jobs import JobRecord

DATA_MOUNT = "/data"
SKYPILOT_TASK_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "resources", "run"],
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z]([-a-z0-9]*[a-z0-9])?$"},
        "num_nodes": {"type": "integer", "minimum": 1},
        "workdir": {"type": "string"},
        "envs": {"type": "object", "additionalProperties": {"type": "string"}},
        "setup": {"type": "string"},
        "run": {"type": "string"},
        "file_mounts": {
            "type": "object",
            "additionalProperties": {
                "anyOf": [
                    {"type": "string"},
                    {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["source"],
                        "properties": {
                            "name": {"type": "string"},
                            "source": {"type": "string", "pattern": "^(s3|gs|r2|cos|oci|https)://"},
                            "store": {"enum": ["s3", "gcs", "azure", "r2", "ibm", "oci"]},
                            "mode": {"enum": ["MOUNT", "COPY", "MOUNT_CACHED"]},
                            "persistent": {"type": "boolean"},
                        },
                    },
                ]
            },
        },
        "resources": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "cloud": {"type": "string"},
                "region": {"type": "string"},
                "accelerators": {"type": "string", "pattern": "^[A-Za-z0-9-]+(:[0-9]+)?$"},
                "cpus": {"type": ["string", "integer"]},
                "memory": {"type": ["string", "integer"]},
                "disk_size": {"type": "integer", "minimum": 1},
                "use_spot": {"type": "boolean"},
                "image_id": {"type": "string"},
                "job_recovery": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "strategy": {"enum": ["FAILOVER", "EAGER_NEXT_REGION"]},
                        "max_restarts_on_errors": {"type": "integer", "minimum": 0},
                    },
                },
            },
        },
    },
}


@dataclass(frozen=True, slots=True)
class Cluster:
    image: str = "margin:0.1.0"
    pvc: str = "margin-data"
    bucket: str | None = None
    accelerator: str = "L4:1"
    gpus: int = 1


def _portable(record: JobRecord) -> None:
    if record.base != LOCAL:
        raise TrainingError(
            f"job {record.id} trains {record.base}, a path on this machine: a cluster job needs base `local` "
            "(the image's SmolLM2) or a job created with a base under the data directory's volume"
        )


def _name(record: JobRecord) -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", record.id.lower()).strip("-")
    return f"margin-tune-{slug}"[:63].rstrip("-")


def _resume(record: JobRecord) -> list[str]:
    return ["margin", "tune", "resume", "--data-dir", DATA_MOUNT, record.id]


def kubernetes_job(record: JobRecord, cluster: Cluster) -> str:
    _portable(record)
    limits: dict[str, Any] = {"memory": "8Gi", "cpu": "4"}
    if cluster.gpus:
        limits["nvidia.com/gpu"] = cluster.gpus
    container = {
        "name": "tune",
        "image": cluster.image,
        "command": _resume(record),
        "env": [{"name": "HF_HUB_OFFLINE", "value": "1"}],
        "resources": {"requests": {"memory": "4Gi", "cpu": "2"}, "limits": limits},
        "volumeMounts": [{"name": "data", "mountPath": DATA_MOUNT}],
    }
    manifest = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": _name(record),
            "labels": {"app.kubernetes.io/name": "margin", "app.kubernetes.io/component": "tune"},
            "annotations": {"margin.dev/tune-job": record.id},
        },
        "spec": {
            "backoffLimit": 6,  # each retry resumes from the newest complete checkpoint
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": "margin", "app.kubernetes.io/component": "tune"}},
                "spec": {
                    "restartPolicy": "OnFailure",
                    "containers": [container],
                    "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": cluster.pvc}}],
                },
            },
        },
    }
    return yaml.safe_dump(manifest, sort_keys=False)


def skypilot_task(record: JobRecord, cluster: Cluster) -> str:
    _portable(record)
    if not cluster.bucket:
        raise TrainingError("a SkyPilot task needs --bucket (s3://..., gs://...): the data directory's home")
    task = {
        "name": _name(record),
        "resources": {
            "accelerators": cluster.accelerator,
            "use_spot": True,
            "job_recovery": {"strategy": "FAILOVER", "max_restarts_on_errors": 3},
        },
        "envs": {"HF_HUB_OFFLINE": "1"},
        "file_mounts": {DATA_MOUNT: {"source": cluster.bucket, "mode": "MOUNT"}},
        "setup": "pip install 'margin[tune,local]'",
        "run": " ".join(_resume(record)),
    }
    return yaml.safe_dump(task, sort_keys=False)


EMITTERS: dict[str, Callable[[JobRecord, Cluster], str]] = {"k8s": kubernetes_job, "skypilot": skypilot_task}
