"""The small Kustomize renderer the deploy tests use: the strategic-merge subset behaves as
kustomize's does, and anything outside the subset is refused rather than silently mis-rendered."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.unit.deploy.kustomize import KustomizeError, merge, render


def test_mappings_merge_null_deletes_and_named_lists_merge_by_name() -> None:
    base = {
        "spec": {
            "replicas": 2,
            "volumes": [{"name": "data", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}],
            "args": ["a", "b"],
        }
    }
    patch = {
        "spec": {
            "replicas": 1,
            "volumes": [{"name": "data", "emptyDir": None, "persistentVolumeClaim": {"claimName": "c"}}],
            "args": ["c"],
        }
    }
    assert merge(base, patch) == {
        "spec": {
            "replicas": 1,
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "c"}}, {"name": "tmp", "emptyDir": {}}],
            "args": ["c"],  # a list without merge keys is replaced
        }
    }
    assert merge({"env": [{"name": "A", "value": "1"}]}, {"env": [{"name": "B", "value": "2"}]}) == {
        "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    }


def write(directory: Path, name: str, content: object) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(yaml.safe_dump(content))


def kustomization(**fields: object) -> dict[str, object]:
    return {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", **fields}


def test_resources_components_patches_and_labels(tmp_path: Path) -> None:
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "base"}}
    write(tmp_path / "base", "cm.yaml", config_map)
    write(tmp_path / "base", "kustomization.yaml", kustomization(resources=["cm.yaml"]))
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}
    write(tmp_path / "component", "s.yaml", secret)
    component = {"apiVersion": "kustomize.config.k8s.io/v1alpha1", "kind": "Component", "resources": ["s.yaml"]}
    write(tmp_path / "component", "kustomization.yaml", component)
    write(tmp_path / "overlay", "patch.yaml", {**config_map, "data": {"k": "overlay"}})
    overlay = kustomization(
        resources=["../base"],
        components=["../component"],
        patches=[{"path": "patch.yaml"}],
        labels=[{"pairs": {"app": "x"}}],
    )
    write(tmp_path / "overlay", "kustomization.yaml", overlay)
    rendered = render(tmp_path / "overlay")
    assert [(m["kind"], m["metadata"]["name"]) for m in rendered] == [("ConfigMap", "c"), ("Secret", "s")]
    assert rendered[0]["data"] == {"k": "overlay"}
    assert all(m["metadata"]["labels"] == {"app": "x"} for m in rendered)


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"namePrefix": "x-"}, "unsupported keys"),
        ({"patches": [{"path": "p.yaml", "target": {"kind": "ConfigMap"}}]}, "only `- path: FILE`"),
        ({"patches": [{"path": "p.yaml"}]}, "matches 0 resources"),
    ],
)
def test_what_the_renderer_cannot_render_faithfully_is_refused(
    tmp_path: Path, fields: dict[str, object], error: str
) -> None:
    write(tmp_path, "p.yaml", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "absent"}})
    write(tmp_path, "kustomization.yaml", kustomization(**fields))
    with pytest.raises(KustomizeError, match=error):
        render(tmp_path)
