"""A small Kustomize renderer for the subset deploy/k8s uses, so tests render the overlays offline
(no kubectl or kustomize binary is available).

Supported, and nothing else (an unknown key in a kustomization.yaml raises, so the tests never
pass on a manifest that kustomize would render differently):

- `resources`: YAML files (several documents each) and directories holding a kustomization.yaml;
- `components`: directories holding a `kind: Component` kustomization, applied to what the
  including kustomization has accumulated so far (their resources added, their patches applied);
- `patches`: `- path: FILE`, strategic-merge patches matched to a resource by kind and name;
- `labels`: `- pairs: {...}`, added to each resource's metadata.labels only (kustomize's default:
  no selectors, no templates).

Strategic merge, the part of it used here: mappings merge key by key, a `null` value deletes the
key, and a list whose items are all mappings with a `name` merges item by item on `name` (the
merge key Kubernetes declares for containers, env and volumes); any other list is replaced.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

Manifest = dict[str, Any]
KNOWN_KEYS = frozenset({"apiVersion", "kind", "resources", "components", "patches", "labels"})


class KustomizeError(ValueError):
    """A kustomization this renderer cannot render faithfully, or a patch with no target."""


def render(directory: Path) -> list[Manifest]:
    """Every resource the kustomization in `directory` renders, in order."""
    return _build(directory, expected_kind="Kustomization", accumulated=[])


def _build(directory: Path, *, expected_kind: str, accumulated: list[Manifest]) -> list[Manifest]:
    spec = _load_kustomization(directory, expected_kind)
    manifests = accumulated
    for entry in spec.get("resources", []):
        manifests = manifests + _resource(directory / entry)
    for entry in spec.get("components", []):
        manifests = _build(directory / entry, expected_kind="Component", accumulated=manifests)
    for patch in spec.get("patches", []):
        if set(patch) != {"path"}:
            raise KustomizeError(f"{directory}: only `- path: FILE` patches are supported, got {patch}")
        manifests = _apply_patch(manifests, yaml.safe_load((directory / patch["path"]).read_text()))
    for label in spec.get("labels", []):
        if set(label) != {"pairs"}:
            raise KustomizeError(f"{directory}: only `labels: - pairs:` is supported, got {label}")
        manifests = [_with_labels(m, label["pairs"]) for m in manifests]
    return manifests


def _load_kustomization(directory: Path, expected_kind: str) -> dict[str, Any]:
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(spec) - KNOWN_KEYS
    if unknown:
        raise KustomizeError(f"{directory}/kustomization.yaml: unsupported keys {sorted(unknown)}")
    if spec.get("kind") != expected_kind:
        raise KustomizeError(f"{directory}/kustomization.yaml: kind {spec.get('kind')!r}, expected {expected_kind}")
    return dict(spec)


def _resource(path: Path) -> list[Manifest]:
    if path.is_dir():
        return render(path)
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _apply_patch(manifests: list[Manifest], patch: Manifest) -> list[Manifest]:
    key = (patch["kind"], patch["metadata"]["name"])
    targets = [i for i, m in enumerate(manifests) if (m["kind"], m["metadata"]["name"]) == key]
    if len(targets) != 1:
        raise KustomizeError(f"patch for {key[0]}/{key[1]} matches {len(targets)} resources, expected 1")
    patched = list(manifests)
    patched[targets[0]] = merge(manifests[targets[0]], patch)
    return patched


def merge(base: Any, patch: Any) -> Any:
    """Strategic merge of `patch` onto `base` (the subset described in the module docstring)."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = merge(base.get(key), value)
        return merged
    if _named_list(base) and _named_list(patch):
        merged_items = list(base)
        for item in patch:
            names = [existing["name"] for existing in merged_items]
            if item["name"] in names:
                index = names.index(item["name"])
                merged_items[index] = merge(merged_items[index], item)
            else:
                merged_items.append(item)
        return merged_items
    return patch


def _named_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(i, dict) and "name" in i for i in value)


def _with_labels(manifest: Manifest, pairs: dict[str, str]) -> Manifest:
    metadata = dict(manifest.get("metadata", {}))
    metadata["labels"] = {**metadata.get("labels", {}), **pairs}
    return {**manifest, "metadata": metadata}
