"""`endpoints_from:`: a deployment's replicas follow a DNS name (issue 24, 2b: pods behind a headless
Service); the resolver is injected, so the tests drive the answers."""

from __future__ import annotations

import asyncio
import socket

import pytest
from pydantic import ValidationError

from margin import errors
from margin.config.discovery import EndpointDiscovery
from margin.config.model import DeploymentConfig
from margin.providers.discovery import base_for, resolve_all
from margin.providers.openai_compat import OpenAICompatProvider


class Dns:
    """Answers what the test last set: a list of addresses, or an error to raise."""

    def __init__(self, *addresses: str) -> None:
        self.answer: list[str] | OSError = list(addresses)
        self.asked: list[tuple[str, int, socket.AddressFamily]] = []

    async def __call__(self, name: str, port: int, family: socket.AddressFamily) -> list[str]:
        self.asked.append((name, port, family))
        if isinstance(self.answer, OSError):
            raise self.answer
        return list(self.answer)


def deployment(**found: object) -> DeploymentConfig:
    spec = {"dns": "vllm-headless.ml.svc.cluster.local", "port": 8000, **found}
    return DeploymentConfig.model_validate(
        {"name": "vllm", "provider": "openai_compat", "model": "llama", "endpoints_from": spec}
    )


def hosts(provider: OpenAICompatProvider) -> list[str]:
    return [str(r["endpoint"]) for r in provider.balancer.describe()]


async def test_the_set_grows_shrinks_and_a_failure_or_empty_answer_keeps_it() -> None:
    dns = Dns("10.0.0.1")
    provider = OpenAICompatProvider(deployment(), resolver=dns)
    discovery = provider.discovery
    assert discovery is not None and provider.balancer.endpoints == []
    assert await discovery.refresh()
    assert hosts(provider) == ["10.0.0.1:8000"]
    assert provider.balancer.endpoints[0].base == "http://10.0.0.1:8000/v1"
    first = provider.balancer.endpoints[0]
    first.in_flight, first.failures, first.out_until, first.drained = 3, 1, 1e12, True  # a call open, breaker out

    dns.answer = ["10.0.0.3", "10.0.0.1", "10.0.0.2"]  # the Deployment scaled 1 -> 3
    assert await discovery.refresh()
    assert sorted(hosts(provider)) == ["10.0.0.1:8000", "10.0.0.2:8000", "10.0.0.3:8000"]
    stays = next(e for e in provider.balancer.endpoints if e.base == first.base)
    assert stays is first and (stays.in_flight, stays.failures, stays.out_until, stays.drained) == (3, 1, 1e12, True)

    dns.answer = ["10.0.0.2", "10.0.0.3"]  # 10.0.0.1's pod went away with its calls still open
    assert await discovery.refresh()
    assert sorted(hosts(provider)) == ["10.0.0.2:8000", "10.0.0.3:8000"]
    provider.balancer.end(first)  # an open call ends on the object it holds
    assert first.in_flight == 2 and all(provider.balancer.pick(None) is not first for _ in range(50))

    dns.answer = socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
    assert not await discovery.refresh()
    dns.answer = []  # no ready pod for a moment: never zero endpoints by accident
    assert not await discovery.refresh()
    assert sorted(hosts(provider)) == ["10.0.0.2:8000", "10.0.0.3:8000"]
    view = discovery.describe()
    assert (view["resolutions"], view["failures"], view["empty_answers"]) == (3, 1, 1)
    assert "gaierror" in str(view["last_error"])
    assert dns.asked[0] == ("vllm-headless.ml.svc.cluster.local", 8000, socket.AF_UNSPEC)


async def test_a_call_before_the_first_answer_is_a_connection_error_not_a_crash() -> None:
    dns = Dns()
    dns.answer = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    provider = OpenAICompatProvider(deployment(refresh_s=60), resolver=dns)
    await provider.start()  # the first resolution fails: start-up goes on
    try:
        with pytest.raises(errors.UpstreamConnection, match="no replica discovered yet"):
            provider._pick({"messages": [{"role": "user", "content": "hi"}]})
    finally:
        await provider.aclose()


async def test_the_background_task_refreshes_until_closed() -> None:
    dns = Dns("10.0.0.1")
    provider = OpenAICompatProvider(deployment(refresh_s=0.01, family="ipv4"), resolver=dns)
    await provider.start()
    assert hosts(provider) == ["10.0.0.1:8000"]  # resolved during start-up, before any request
    dns.answer = ["10.0.0.1", "10.0.0.9"]
    for _ in range(200):
        if len(provider.balancer.endpoints) == 2:
            break
        await asyncio.sleep(0.01)
    assert hosts(provider) == ["10.0.0.1:8000", "10.0.0.9:8000"]
    await provider.aclose()
    asked = len(dns.asked)
    await asyncio.sleep(0.05)
    assert len(dns.asked) == asked and dns.asked[-1][2] == socket.AF_INET  # stopped; A records only


async def test_the_real_resolver_finds_localhost() -> None:
    assert "127.0.0.1" in await resolve_all("localhost", 8000, socket.AF_INET)
    assert base_for(EndpointDiscovery(dns="x", port=80, path="/v1/"), "fd00::1") == "http://[fd00::1]:80/v1"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"endpoints": ["http://a:8000/v1"]}, "give endpoints or endpoints_from, not both"),
        ({"base_url": "http://a:8000/v1"}, "endpoints_from replaces base_url"),
        ({"provider": "anthropic"}, "endpoints_from needs provider: openai_compat"),
    ],
)
def test_endpoints_from_is_exclusive(extra: dict[str, object], message: str) -> None:
    spec = {"name": "vllm", "provider": "openai_compat", "model": "llama", "endpoints_from": {"dns": "a.b", "port": 1}}
    with pytest.raises(ValidationError, match=message):
        DeploymentConfig.model_validate({**spec, **extra})


@pytest.mark.parametrize("dns", ["http://vllm:8000", "vllm/v1", "vllm:8000", ""])
def test_dns_is_a_name_only(dns: str) -> None:
    with pytest.raises(ValidationError, match="endpoints_from"):
        EndpointDiscovery(dns=dns, port=8000)
