"""The vLLM template's headless Service is what `endpoints_from:` resolves: no cluster IP (DNS
answers one record per pod), the Deployment's pods, their http port, and a config naming it validates."""

from __future__ import annotations

import re

from margin.config.model import DeploymentConfig
from tests.unit.deploy.kustomize import render
from tests.unit.deploy.manifests import K8S, one


def test_the_headless_service_selects_the_vllm_pods_and_the_example_config_validates() -> None:
    manifests = render(K8S / "vllm")
    headless = one(manifests, "Service", "vllm-llama-headless")
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is False
    pods = one(manifests, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert headless["spec"]["selector"].items() <= pods.items()
    container = one(manifests, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    port = next(
        p["containerPort"] for p in container["ports"] if p["name"] == headless["spec"]["ports"][0]["targetPort"]
    )
    assert headless["spec"]["ports"][0]["port"] == port
    text = (K8S / "vllm" / "service-headless.yaml").read_text()
    example = re.search(r"endpoints_from: \{dns: ([^,]+), port: (\d+), path: (\S+), refresh_s: (\d+)\}", text)
    assert example is not None, "service-headless.yaml lost its example config"
    dns, example_port, path, refresh = example.groups()
    assert dns.split(".")[0] == headless["metadata"]["name"] and int(example_port) == port
    found = {"dns": dns.replace("<namespace>", "ml"), "port": int(example_port), "path": path, "refresh_s": refresh}
    config = DeploymentConfig.model_validate(
        {"name": "vllm", "provider": "openai_compat", "model": "llama", "endpoints_from": found}
    )
    assert config.endpoints_from is not None and config.endpoints_from.port == port
