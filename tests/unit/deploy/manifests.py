"""The manifest sets deploy/k8s renders, for the tests beside this file: each overlay, the ha
overlay with the KEDA option in place of the Prometheus-adapter HPA, and the vLLM template."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.unit.deploy.kustomize import Manifest, render

K8S = Path(__file__).resolve().parents[3] / "deploy" / "k8s"


def ha_with_keda(tmp_dir: Path) -> list[Manifest]:
    """The ha overlay with components/keda in place of components/hpa-prometheus-adapter, as
    docs/deploy.md tells an operator to switch (an overlay of its own in `tmp_dir`)."""
    ha = yaml.safe_load((K8S / "overlays" / "ha" / "kustomization.yaml").read_text())
    components = [c.replace("hpa-prometheus-adapter", "keda") for c in ha["components"]]
    assert components != ha["components"], "the ha overlay no longer names the adapter HPA component"
    spec = {
        **ha,
        "resources": [str(K8S / "base")],
        "components": [str((K8S / "overlays" / "ha" / c).resolve()) for c in components],
        "patches": [{"path": str(K8S / "overlays" / "ha" / p["path"])} for p in ha["patches"]],
    }
    (tmp_dir / "kustomization.yaml").write_text(yaml.safe_dump(spec))
    return render(tmp_dir)


def rendered_sets(tmp_dir: Path) -> dict[str, list[Manifest]]:
    return {
        "base": render(K8S / "base"),
        "single": render(K8S / "overlays" / "single"),
        "ha": render(K8S / "overlays" / "ha"),
        "ha+keda": ha_with_keda(tmp_dir),
        "vllm": render(K8S / "vllm"),
    }


def one(manifests: list[Manifest], kind: str, name: str | None = None) -> Manifest:
    found = [m for m in manifests if m["kind"] == kind and (name is None or m["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def pod_specs(manifests: list[Manifest]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(name, pod spec) of every workload that runs pods."""
    for manifest in manifests:
        if manifest["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
            yield manifest["metadata"]["name"], manifest["spec"]["template"]["spec"]
