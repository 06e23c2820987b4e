"""The gateway Deployment agrees with what `margin serve` exposes, read from the code, not a copy:
the config it mounts validates and passes serve's own start-up checks, the container ports are the
config's API and metrics ports, the probes hit routes the app serves, every `env:VAR` the config
names is filled from a Secret, the data dir is a writable volume, and the ServiceMonitor scrapes a
path the metrics listener answers with the token the config asks for."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

import pytest

from margin.api.access import METRICS_LISTENER_PATHS
from margin.api.routes import build_routes
from margin.cli.serve import serve
from margin.config.environment import CONFIG_FILE, DATA_DIR
from margin.config.loader import parse_config
from margin.config.model import MarginConfig
from margin.server.exposure import exposure_problems
from margin.server.listeners import metrics_listener_refusal
from tests.unit.deploy.kustomize import Manifest
from tests.unit.deploy.manifests import one, rendered_sets

GATEWAY_SETS = ("base", "single", "ha", "ha+keda")


@pytest.fixture(scope="module")
def sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Manifest]]:
    return rendered_sets(tmp_path_factory.mktemp("ha-keda"))


def gateway(manifests: list[Manifest]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(pod spec, the margin container) of the gateway Deployment."""
    pod = one(manifests, "Deployment", "margin")["spec"]["template"]["spec"]
    return pod, next(c for c in pod["containers"] if c["name"] == "margin")


def serve_options(args: list[str]) -> dict[str, str]:
    """`margin serve`'s options in the container's args, each checked against serve's own options."""
    assert args[0] == "serve", args
    known = {opt for param in serve.params for opt in param.opts}
    options = dict(zip(args[1::2], args[2::2], strict=True))
    assert set(options) <= known, f"options margin serve does not have: {set(options) - known}"
    return options


def mounted_config(manifests: list[Manifest], pod: dict[str, Any], container: dict[str, Any]) -> MarginConfig:
    """The margin.yaml the container's `--config` path resolves to through its volume mounts."""
    path = PurePosixPath(serve_options(container["args"])["--config"])
    mount = next(m for m in container["volumeMounts"] if path.parent == PurePosixPath(m["mountPath"]))
    assert mount.get("readOnly") is True
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    config_map = one(manifests, "ConfigMap", volume["configMap"]["name"])
    return parse_config(config_map["data"][path.name], source=f"ConfigMap {config_map['metadata']['name']}")


def referenced_variables(config: MarginConfig) -> set[str]:
    """Every `env:VAR` the config names (admin key, metrics token, Redis URL, upstream keys)."""
    secrets = [config.server.admin_key, config.server.metrics_token, config.redis.url if config.redis else None]
    secrets += [d.api_key for d in config.deployments]
    return {s.reference for s in secrets if s is not None and s.reference is not None}


@pytest.mark.parametrize("set_name", GATEWAY_SETS)
def test_the_mounted_config_passes_serves_startup_checks(
    sets: dict[str, list[Manifest]], set_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pod, container = gateway(sets[set_name])
    config = mounted_config(sets[set_name], pod, container)
    env = {e["name"]: e for e in container["env"]}
    for variable in referenced_variables(config):
        assert variable in env and "secretKeyRef" in env[variable]["valueFrom"], variable
        monkeypatch.setenv(variable, "from-a-secret")
    options = serve_options(container["args"])
    api_port = int(options.get("--port", config.server.port))
    assert exposure_problems(options["--host"], config) == []
    assert metrics_listener_refusal(config, api_port) is None
    assert CONFIG_FILE.name not in env, "--config sets MARGIN_CONFIG: one source of truth"


@pytest.mark.parametrize("set_name", GATEWAY_SETS)
def test_ports_and_probes_are_what_serve_listens_and_answers_on(sets: dict[str, list[Manifest]], set_name: str) -> None:
    pod, container = gateway(sets[set_name])
    config = mounted_config(sets[set_name], pod, container)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": config.server.port, "metrics": config.server.metrics_port}
    served = {(route.path, method) for route in build_routes() for method in route.methods or ()}
    probes = {
        "readinessProbe": "/readyz",
        "livenessProbe": "/healthz",
        "startupProbe": "/healthz",
    }
    for probe, path in probes.items():
        http_get = container[probe]["httpGet"]
        assert http_get["path"] == path
        assert (path, "GET") in served
        assert ports[http_get["port"]] == config.server.port, f"{probe} must probe the API port"


@pytest.mark.parametrize("set_name", GATEWAY_SETS)
def test_the_data_dir_is_a_writable_volume(sets: dict[str, list[Manifest]], set_name: str) -> None:
    _, container = gateway(sets[set_name])
    env = {e["name"]: e.get("value") for e in container["env"]}
    writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
    assert env[DATA_DIR.name] in writable


@pytest.mark.parametrize("set_name", GATEWAY_SETS)
def test_service_and_service_monitor_reach_the_containers_ports(sets: dict[str, list[Manifest]], set_name: str) -> None:
    manifests = sets[set_name]
    pod, container = gateway(manifests)
    config = mounted_config(manifests, pod, container)
    container_ports = {p["name"] for p in container["ports"]}
    service = one(manifests, "Service", "margin")
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= container_ports
    monitors = [m for m in manifests if m["kind"] == "ServiceMonitor"]
    for monitor in monitors:
        assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
        for endpoint in monitor["spec"]["endpoints"]:
            service_port = next(p for p in service["spec"]["ports"] if p["name"] == endpoint["port"])
            assert service_port["targetPort"] == "metrics"  # the listener on server.metrics_port
            assert endpoint["path"] in METRICS_LISTENER_PATHS
            token = endpoint["authorization"]["credentials"]
            env = {e["name"]: e for e in container["env"]}
            assert config.server.metrics_token is not None
            assert env[config.server.metrics_token.reference or ""]["valueFrom"]["secretKeyRef"] == {
                "name": token["name"],
                "key": token["key"],
            }
    assert monitors or set_name in {"base", "single"}
