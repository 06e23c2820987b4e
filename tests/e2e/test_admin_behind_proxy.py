"""The admin API behind a reverse proxy on the same host (issue 16, item 1), over real HTTP.

Reproduction: without an admin key, admin endpoints answered any request from loopback, so behind
nginx/Caddy/a sidecar (every request then comes from 127.0.0.1) anyone could `POST /admin/keys`
and get a working key, and so could a request forging `X-Forwarded-For` from loopback. Here
`margin serve` runs as a process on loopback, with a real reverse proxy (tests/support) in front.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.cli import cli_env, margin_script, run_margin
from tests.support.processes import free_port, gateway, running
from tests.support.reverse_proxy import reverse_proxy

ADMIN = "admin-behind-proxy-key"
REMOTE = "203.0.113.9"  # a client on another machine, as the proxy reports it
CONFIG = """
deployments:
  - {name: up, provider: fake, model: fake, price: {input: "1", output: "1"}}
models:
  - {name: chat, deployments: [up]}
cache: {enabled: false}
"""
NEW_KEY = {"name": "from-outside", "team": "intruders"}


@pytest.fixture(scope="module")
def open_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The default: no admin key, no trusted proxy."""
    with gateway(CONFIG, tmp_path_factory.mktemp("open")) as url:
        yield url


@pytest.fixture(scope="module")
def keyed_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    config = CONFIG + "server: {admin_key: env:MARGIN_ADMIN_KEY}\n"
    with gateway(config, tmp_path_factory.mktemp("keyed"), env={"MARGIN_ADMIN_KEY": ADMIN}) as url:
        yield url


@pytest.fixture(scope="module")
def trusting_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """No admin key, and the proxy on 127.0.0.1 is trusted to name the client."""
    with gateway(CONFIG + "server: {trusted_proxies: [127.0.0.1]}\n", tmp_path_factory.mktemp("trusting")) as url:
        yield url


def keys_created(url: str) -> int:
    """How many keys exist, asked as the local operator (loopback, no proxy header)."""
    listed = httpx.get(f"{url}/admin/keys", timeout=10)
    assert listed.status_code == 200, listed.text
    return len(listed.json()["data"])


@pytest.mark.parametrize(
    "forged",
    [
        {"x-forwarded-for": REMOTE},
        {"x-forwarded-for": "127.0.0.1"},
        {"forwarded": f"for={REMOTE};proto=https"},
        {"forwarded": "for=127.0.0.1"},
        {"x-real-ip": REMOTE},
        {"x-forwarded-for": f"{REMOTE}, 127.0.0.1"},
    ],
)
def test_forged_proxy_headers_from_loopback_never_open_the_admin_api(open_gateway: str, forged: dict[str, str]) -> None:
    reply = httpx.post(f"{open_gateway}/admin/keys", json=NEW_KEY, headers=forged, timeout=10)
    assert reply.status_code == 403, reply.text
    assert reply.json()["error"]["code"] == "permission_denied" and "key" not in reply.json()
    assert "trusted_proxies" in reply.json()["error"]["message"]
    assert keys_created(open_gateway) == 0  # the local operator still gets in, and nothing was created


async def test_through_an_untrusted_proxy_the_admin_api_is_refused(open_gateway: str) -> None:
    for client_as in (REMOTE, None):  # a remote client, and even one on this machine
        async with reverse_proxy(open_gateway, client_as=client_as) as proxy, httpx.AsyncClient() as http:
            reply = await http.post(f"{proxy}/admin/keys", json=NEW_KEY, timeout=10)
            assert reply.status_code == 403, reply.text
            assert (await http.get(f"{proxy}/admin/spend", timeout=10)).status_code == 403
            assert (await http.get(f"{proxy}/healthz", timeout=10)).status_code == 200  # the proxy works
    assert keys_created(open_gateway) == 0


async def test_through_the_proxy_the_admin_key_opens_the_admin_api(keyed_gateway: str) -> None:
    async with reverse_proxy(keyed_gateway, client_as=REMOTE) as proxy, httpx.AsyncClient() as http:
        anonymous = await http.post(f"{proxy}/admin/keys", json=NEW_KEY, timeout=10)
        assert anonymous.status_code == 401, anonymous.text
        created = await http.post(
            f"{proxy}/admin/keys", json=NEW_KEY, headers={"authorization": f"Bearer {ADMIN}"}, timeout=10
        )
        assert created.status_code == 201, created.text
        client = openai.AsyncOpenAI(base_url=f"{proxy}/v1", api_key=created.json()["key"], max_retries=0)
        answer = await client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
        assert answer.choices[0].message.content
        await client.close()


async def test_a_trusted_proxy_names_the_client_and_only_a_local_one_gets_in(trusting_gateway: str) -> None:
    # A client on this machine (bound to 127.0.0.5, so the proxy's header is not its own address)
    # reaches the admin API through the trusted proxy, as the operator on this machine.
    local_client = httpx.AsyncHTTPTransport(local_address="127.0.0.5")
    async with reverse_proxy(trusting_gateway) as proxy, httpx.AsyncClient(transport=local_client) as http:
        created = await http.post(f"{proxy}/admin/keys", json={"name": "operator"}, timeout=10)
        assert created.status_code == 201, created.text
    # A remote client, even one that forges a loopback X-Forwarded-For: the rightmost untrusted hop
    # (the one the proxy appended) is the client, and it is not this machine.
    async with reverse_proxy(trusting_gateway, client_as=REMOTE) as proxy, httpx.AsyncClient() as http:
        for forged in ({}, {"x-forwarded-for": "127.0.0.1"}, {"x-forwarded-for": "127.0.0.1, ::1"}):
            refused = await http.post(f"{proxy}/admin/keys", json=NEW_KEY, headers=forged, timeout=10)
            assert refused.status_code == 403, refused.text
            assert REMOTE in refused.json()["error"]["message"]  # the address came from the header
    assert keys_created(trusting_gateway) == 1


def test_serve_refuses_an_exposed_bind_before_binding(tmp_path: Path) -> None:
    """`margin serve --host 0.0.0.0` (the installed script) with no admin key and no required
    client keys exits at once with what to set. Port 65536 cannot be bound: were the check gone,
    the server would fail too, without the message, and nothing would ever listen."""
    config = tmp_path / "margin.yaml"
    config.write_text(CONFIG)
    started = time.monotonic()
    result = run_margin("serve", "--config", config, "--host", "0.0.0.0", "--port", "65536", data_dir=tmp_path)
    assert result.returncode != 0 and time.monotonic() - started < 30
    assert "refusing to serve on 0.0.0.0" in result.stderr
    assert "server.admin_key" in result.stderr and "auth: required" in result.stderr


def test_any_loopback_address_serves_without_keys(tmp_path: Path) -> None:
    config = tmp_path / "margin.yaml"
    config.write_text(CONFIG)
    port = free_port()
    args = ["serve", "--config", str(config), "--host", "127.0.0.2", "--port", str(port)]
    env = cli_env(tmp_path / "data")
    with running(args, f"http://127.0.0.2:{port}/healthz", env=env, program=[str(margin_script())]):
        # The whole 127.0.0.0/8 is this machine: the local operator's admin API needs no key there.
        assert httpx.get(f"http://127.0.0.2:{port}/admin/keys", timeout=10).status_code == 200
