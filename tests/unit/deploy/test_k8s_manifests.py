"""deploy/k8s: every rendered manifest validates against the Kubernetes OpenAPI schema of a pinned
release (kubernetes-validate bundles the schemas; strict: unknown fields fail), the custom resources
against their CRD schemas, and every pod passes the static security rules."""

from __future__ import annotations

import copy
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml

from margin.api.access import METRICS_LISTENER_PATHS
from margin.metrics import Metrics
from tests.unit.deploy.crd_schemas import SCHEMAS
from tests.unit.deploy.kustomize import Manifest
from tests.unit.deploy.manifests import K8S, one, pod_specs, rendered_sets

KUBERNETES_VERSION = "1.34.0"  # the oldest release the manifests target (preStop sleep is GA from 1.34)
SET_NAMES = ("base", "single", "ha", "ha+keda", "vllm")


@pytest.fixture(scope="module")
def sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Manifest]]:
    return rendered_sets(tmp_path_factory.mktemp("ha-keda"))


def validate(manifest: Manifest) -> None:
    """Raise when `manifest` is not a valid resource of its kind."""
    schema = SCHEMAS.get((manifest["apiVersion"], manifest["kind"]))
    if schema is not None:
        jsonschema.validate(manifest, schema)
    else:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("set_name", SET_NAMES)
def test_every_manifest_is_valid_for_its_schema(sets: dict[str, list[Manifest]], set_name: str) -> None:
    manifests = sets[set_name]
    assert manifests
    for manifest in manifests:
        validate(manifest)


@pytest.mark.parametrize(
    ("kind", "path", "bad_value"),
    [
        ("Deployment", ["spec", "template", "spec", "containers", 0, "readinessProbe", "httpGett"], {"path": "/"}),
        ("Deployment", ["spec", "replicas"], "three"),
        ("ScaledObject", ["spec", "triggers", 0, "metadata", "targetValue"], 1),
        ("ServiceMonitor", ["spec", "endpoints", 0, "interval"], "15 seconds"),
    ],
)
def test_the_validation_catches_a_bad_field(
    sets: dict[str, list[Manifest]], kind: str, path: list[Any], bad_value: object
) -> None:
    source = "vllm" if kind == "ScaledObject" else "ha"
    broken = copy.deepcopy(next(m for m in sets[source] if m["kind"] == kind))
    node: Any = broken
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = bad_value
    with pytest.raises((kubernetes_validate.ValidationError, jsonschema.ValidationError)):
        validate(broken)


def test_every_custom_resource_has_a_schema(sets: dict[str, list[Manifest]]) -> None:
    kinds = {(m["apiVersion"], m["kind"]) for manifests in sets.values() for m in manifests}
    custom = {k for k in kinds if "." in k[0].split("/")[0] and not k[0].split("/")[0].endswith("k8s.io")}
    assert custom == set(SCHEMAS)


def security_problems(name: str, pod: dict[str, Any]) -> list[str]:
    """What a static policy (non-root, no privilege escalation, read-only root, limits) refuses."""
    problems = []
    pod_context = pod.get("securityContext", {})
    if pod.get("hostNetwork") or pod.get("hostPID") or pod.get("hostIPC"):
        problems.append(f"{name}: shares a host namespace")
    if any("hostPath" in volume for volume in pod.get("volumes", [])):
        problems.append(f"{name}: mounts a hostPath")
    if pod.get("automountServiceAccountToken") is not False:
        problems.append(f"{name}: mounts a service account token")
    for container in pod["containers"] + pod.get("initContainers", []):
        where = f"{name}/{container['name']}"
        context = container.get("securityContext", {})
        if not (context.get("runAsNonRoot") or pod_context.get("runAsNonRoot")):
            problems.append(f"{where}: may run as root")
        if context.get("runAsUser", pod_context.get("runAsUser")) in (None, 0):
            problems.append(f"{where}: no non-zero runAsUser")
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: privilege escalation allowed")
        if context.get("privileged"):
            problems.append(f"{where}: privileged")
        if context.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{where}: writable root filesystem")
        if "ALL" not in context.get("capabilities", {}).get("drop", []):
            problems.append(f"{where}: capabilities not dropped")
        if context.get("capabilities", {}).get("add"):
            problems.append(f"{where}: adds capabilities")
        resources = container.get("resources", {})
        for section in ("requests", "limits"):
            missing = {"cpu", "memory"} - set(resources.get(section, {}))
            if missing:
                problems.append(f"{where}: no {section} for {', '.join(sorted(missing))}")
        image = container["image"]
        if ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest"):
            problems.append(f"{where}: image {image} has no pinned tag")
    if (pod.get("securityContext", {}).get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        problems.append(f"{name}: no RuntimeDefault seccomp profile")
    return problems


@pytest.mark.parametrize("set_name", SET_NAMES)
def test_every_pod_passes_the_security_rules(sets: dict[str, list[Manifest]], set_name: str) -> None:
    pods = list(pod_specs(sets[set_name]))
    assert pods
    for name, pod in pods:
        assert security_problems(name, pod) == []


def test_the_security_rules_refuse_a_root_pod_without_limits(sets: dict[str, list[Manifest]]) -> None:
    pod = copy.deepcopy(one(sets["ha"], "Deployment", "margin")["spec"]["template"]["spec"])
    del pod["securityContext"]["runAsNonRoot"]
    container = pod["containers"][0]
    container["securityContext"] = {"allowPrivilegeEscalation": True, "runAsUser": 0}
    del container["resources"]["limits"]
    problems = security_problems("margin", pod)
    assert any("may run as root" in p for p in problems)
    assert any("privilege escalation" in p for p in problems)
    assert any("writable root filesystem" in p for p in problems)
    assert any("no limits" in p for p in problems)


def test_writable_paths_are_volumes_on_a_read_only_root(sets: dict[str, list[Manifest]]) -> None:
    for set_name in SET_NAMES:
        for name, pod in pod_specs(sets[set_name]):
            mounts = {m["mountPath"] for c in pod["containers"] for m in c.get("volumeMounts", [])}
            assert "/tmp" in mounts, f"{set_name}/{name}: /tmp is not a volume"


def test_gateway_pods_spread_and_a_disruption_budget_covers_them(sets: dict[str, list[Manifest]]) -> None:
    for set_name in ("single", "ha", "ha+keda"):
        deployment = one(sets[set_name], "Deployment", "margin")
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        budget = one(sets[set_name], "PodDisruptionBudget")
        assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
        spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
        assert {c["topologyKey"] for c in spread} == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
        for constraint in spread:
            assert constraint["labelSelector"]["matchLabels"].items() <= labels.items()
        service = one(sets[set_name], "Service", "margin")
        assert service["spec"]["selector"].items() <= labels.items()


def test_single_runs_one_replica_on_a_claimed_volume_and_ha_several(sets: dict[str, list[Manifest]]) -> None:
    single = one(sets["single"], "Deployment", "margin")
    assert single["spec"]["replicas"] == 1
    assert single["spec"]["strategy"]["type"] == "Recreate"  # never two writers on one SQLite file
    data = next(v for v in single["spec"]["template"]["spec"]["volumes"] if v["name"] == "data")
    assert data == {"name": "data", "persistentVolumeClaim": {"claimName": "margin-data"}}
    one(sets["single"], "PersistentVolumeClaim", "margin-data")
    assert one(sets["ha"], "Deployment", "margin")["spec"]["replicas"] >= 2


def test_ha_reads_datastore_credentials_from_secrets(sets: dict[str, list[Manifest]]) -> None:
    container = one(sets["ha"], "Deployment", "margin")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    for name in ("PGHOST", "PGUSER", "PGPASSWORD", "PGDATABASE", "MARGIN_REDIS_URL", "MARGIN_ADMIN_KEY"):
        assert "secretKeyRef" in env[name]["valueFrom"], name
        assert "value" not in env[name]


def test_the_autoscalers_target_the_gateway_and_read_metrics_margin_serves(sets: dict[str, list[Manifest]]) -> None:
    served = served_series()
    hpa = one(sets["ha"], "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "margin"}
    keda = one(sets["ha+keda"], "ScaledObject")
    assert keda["spec"]["scaleTargetRef"]["name"] == "margin"
    assert not [m for m in sets["ha+keda"] if m["kind"] == "HorizontalPodAutoscaler"], "two autoscalers"
    adapter_rules = K8S / "components" / "hpa-prometheus-adapter" / "adapter-rules.yaml"
    rule = yaml.safe_load(adapter_rules.read_text())["rules"]["custom"][0]
    assert rule["name"]["as"] == hpa["spec"]["metrics"][0]["pods"]["metric"]["name"]
    assert rule["seriesQuery"].split("{")[0] in served
    query = keda["spec"]["triggers"][0]["metadata"]["query"]
    assert query.split("(")[-1].split("{")[0] in served, query


def test_the_model_server_scales_on_margins_autoscale_endpoint(sets: dict[str, list[Manifest]]) -> None:
    """KEDA's metrics-api trigger reads a path the metrics listener serves, on the metrics port, with
    the metrics token, at the JSON location /autoscale answers (tests/e2e/test_autoscale_signals.py)."""
    trigger = one(sets["vllm"], "ScaledObject")["spec"]["triggers"][0]
    assert trigger["type"] == "metrics-api"
    url = urlsplit(trigger["metadata"]["url"])
    assert url.path in METRICS_LISTENER_PATHS and url.path == "/autoscale"
    service = one(sets["base"], "Service")
    assert url.hostname is not None and url.hostname.split(".")[0] == service["metadata"]["name"]
    assert url.port == next(p["port"] for p in service["spec"]["ports"] if p["name"] == "metrics")
    assert trigger["metadata"]["valueLocation"] == "deployments.vllm-llama.desired_replicas"
    auth = one(sets["vllm"], "TriggerAuthentication")
    assert auth["metadata"]["name"] == trigger["authenticationRef"]["name"]
    assert auth["spec"]["secretTargetRef"] == [{"parameter": "token", "name": "margin-secrets", "key": "metrics-token"}]
    assert trigger["metadata"]["authMode"] == "bearer"
    adapter_rules = K8S / "components" / "hpa-prometheus-adapter" / "adapter-rules.yaml"
    external = yaml.safe_load(adapter_rules.read_text())["rules"]["external"][0]
    assert external["seriesQuery"].split("{")[0] == "margin_deployment_desired_replicas"


def served_series() -> set[str]:
    """The series names margin's metrics registry exposes (a labelled counter has no sample until
    first used, so names come from the families: counters as `_total`, histograms by bucket/sum/count)."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    families = Metrics().registry.collect()
    return {f.name + suffix for f in families for suffix in suffixes.get(f.type, ("",))}
