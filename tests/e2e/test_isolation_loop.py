"""One client's body must not stall everyone else (issue 16, 2).

Found on loopback: with `auth: required` and no key, an 8 MB body of 250,000 empty messages was
parsed and validated before its 401, stalling the event loop 1.15 s (eight at once: /healthz 2.8 s);
the local model's tokenizer ran on the loop over a whole 7 MB prompt before the context-window check
(3.3 s, 10.9 s without spaces); a 7 MB model name came back whole in its 404.

A real gateway is served on loopback inside this test's event loop, so an in-process probe reads how
long that loop was ever blocked (`LoopLag`), while a well-behaved neighbour on its own thread keeps
asking the official SDK and /healthz and must be answered promptly throughout.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest

from margin.app import create_app
from margin.config import parse_config
from margin.identity.key_spec import KeySpec
from margin.pipeline.handler import Pipeline
from margin.storage.memory import MemoryKeyStore
from tests.conftest import HAS_LOCAL_MODEL
from tests.support.isolation import LoopLag, Neighbour
from tests.support.loopback import serving

# Generous for a shared CI machine, and far below what the bad bodies cost before (1-11 s).
MAX_LOOP_LAG_S = 0.25
MAX_NEIGHBOUR_WAIT_S = 1.0

USER: Any = [{"role": "user", "content": "hi"}]
LOCAL = """  - {name: local, provider: local, model: SmolLM2-135M-Instruct, context_window: 2048,
     local: {max_concurrency: 1, n_ctx: 2048}, price: {input: "0", output: "0"}}
"""


def config(data_dir: Path, *, local: bool) -> str:
    return f"""
data_dir: {data_dir}
auth: required
deployments:
  - {{name: fake, provider: fake, model: fake-chat, price: {{input: "1", output: "2"}}}}
{LOCAL if local else ""}models:
  - {{name: chat, deployments: [fake]}}
{"  - {name: local, deployments: [local]}" if local else ""}
"""


@dataclass
class Gateway:
    url: str
    keys: dict[str, str]

    def post(self, path: str, body: bytes, key: str | None) -> httpx.Response:
        """The bad client: raw bytes, as an attacker sends them, from a thread of its own."""
        headers = {"content-type": "application/json"}
        if key is not None:
            headers["authorization"] = f"Bearer {key}"
        return httpx.post(f"{self.url}{path}", content=body, headers=headers, timeout=60)

    async def attack(
        self, body: bytes, *, key: str | None, times: int = 1, path: str = "/v1/chat/completions"
    ) -> list[httpx.Response]:
        return list(await asyncio.gather(*(asyncio.to_thread(self.post, path, body, key) for _ in range(times))))


@asynccontextmanager
async def gateway(tmp_path: Path, *, local: bool = False) -> AsyncIterator[Gateway]:
    app = create_app(parse_config(config(tmp_path / "data", local=local)), key_store=MemoryKeyStore())
    pipeline: Pipeline = app.state.gateway.pipeline
    async with serving(app) as url:
        keys = pipeline.limits.keys
        assert keys is not None
        secrets = {team: (await keys.create(KeySpec(org="acme", team=team)))[1] for team in ("bad", "good")}
        yield Gateway(url, secrets)


def ask_chat(client: openai.OpenAI) -> object:
    return client.chat.completions.create(model="chat", messages=USER, max_tokens=5)


def neighbour_was_fine(neighbour: Neighbour, lag: LoopLag) -> None:
    assert lag.worst_s <= MAX_LOOP_LAG_S, f"the event loop was blocked {lag.worst_s * 1000:.0f} ms"
    assert not neighbour.failures, neighbour.failures
    assert neighbour.answered >= 2, "the neighbour was not answered while the bad client ran"
    assert neighbour.slowest_s <= MAX_NEIGHBOUR_WAIT_S, f"a neighbour's request took {neighbour.slowest_s:.2f} s"


def empty_messages(count: int, model: str = "chat") -> bytes:
    return orjson.dumps({"model": model, "messages": [{"role": "user", "content": ""}] * count})


async def test_bodies_without_a_key_are_refused_from_the_headers(tmp_path: Path) -> None:
    body = empty_messages(250_000)  # 7 MB
    async with gateway(tmp_path) as gw, LoopLag() as lag:
        async with Neighbour(gw.url, gw.keys["good"], ask_chat) as neighbour:
            refused = await gw.attack(body, key=None, times=8)
            refused += await gw.attack(body, key="sk-margin-not-a-key", times=2)
        assert {r.status_code for r in refused} == {401}
        assert all(r.json()["error"]["type"] == "authentication_error" for r in refused)
        neighbour_was_fine(neighbour, lag)
        # The key is checked before the body is read: a body that is not even JSON, or is over the
        # size limit, is still a 401 for a caller without a key.
        (broken,) = await gw.attack(b"{not json", key=None)
        (oversized,) = await gw.attack(b"[" * 9_000_000, key=None, path="/v1/messages")
        assert broken.status_code == oversized.status_code == 401
        assert oversized.json()["type"] == "error"  # Anthropic's envelope on /v1/messages


async def test_bodies_with_too_much_in_them_are_refused_before_they_are_parsed(tmp_path: Path) -> None:
    async with gateway(tmp_path) as gw, LoopLag() as lag:
        key = gw.keys["bad"]
        async with Neighbour(gw.url, gw.keys["good"], ask_chat) as neighbour:
            many = await gw.attack(empty_messages(250_000), key=key, times=2)
            objects = await gw.attack(b'{"model": "chat", "x": [' + b"{}," * 2_600_000 + b"{}]}", key=key)
            numbers = await gw.attack(b'{"model": "chat", "x": [' + b"0," * 4_000_000 + b"0]}", key=key)
            over = await gw.attack(empty_messages(2049), key=key)
            anthropic = await gw.attack(empty_messages(2049), key=key, path="/v1/messages")
        for response in [*many, *objects, *numbers]:
            assert response.status_code == 413 and response.json()["error"]["code"] == "json_too_large"
        (response,) = over
        assert response.status_code == 400 and response.json()["error"]["code"] == "too_many_messages"
        (response,) = anthropic
        assert response.status_code == 400 and response.json()["type"] == "error"  # Anthropic's envelope
        neighbour_was_fine(neighbour, lag)
        (limit,) = await gw.attack(orjson.dumps({"model": "chat", "messages": USER * 2048}), key=key)
        assert limit.status_code == 200, limit.text[:300]  # the bound itself is served


async def test_a_huge_model_name_is_cut_in_its_404(tmp_path: Path) -> None:
    async with gateway(tmp_path) as gw, LoopLag() as lag:
        name = "m" * 7_000_000
        async with Neighbour(gw.url, gw.keys["good"], ask_chat) as neighbour:
            (response,) = await gw.attack(orjson.dumps({"model": name, "messages": USER}), key=gw.keys["bad"])
            path = await asyncio.to_thread(
                httpx.get, f"{gw.url}/v1/models/{'m' * 20_000}", headers={"authorization": f"Bearer {gw.keys['bad']}"}
            )
        assert response.status_code == 404 and len(response.content) < 1024, len(response.content)
        assert "(7,000,000 characters)" in response.json()["error"]["message"]
        assert path.status_code == 404 and len(path.content) < 1024
        neighbour_was_fine(neighbour, lag)


@pytest.mark.local_model
@pytest.mark.skipif(not HAS_LOCAL_MODEL, reason="needs the 'local' extra")
async def test_a_huge_prompt_to_the_local_model_stalls_no_one(tmp_path: Path) -> None:
    async with gateway(tmp_path, local=True) as gw:
        key = gw.keys["bad"]
        local = openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key=gw.keys["good"], max_retries=0)
        async with local:
            await warm(local)
            many_messages = [{"role": "user", "content": "lorem ipsum " * 280}] * 2048  # 7 MB in all
            async with LoopLag() as lag, Neighbour(gw.url, gw.keys["good"], ask_chat) as neighbour:
                spaced = await gw.attack(prompt("local", "lorem ipsum " * 600_000), key=key)  # 7 MB
                solid = await gw.attack(prompt("local", "x" * 7_000_000), key=key)
                tokenized = await gw.attack(prompt("local", "lorem ipsum " * 5_000), key=key)  # 60 KB
                many = await gw.attack(orjson.dumps({"model": "local", "messages": many_messages}), key=key)
            for response in [*spaced, *solid, *tokenized, *many]:
                assert response.status_code == 400, response.text[:300]
                assert response.json()["error"]["code"] == "context_length_exceeded"
            neighbour_was_fine(neighbour, lag)
            answer = await local.chat.completions.create(model="local", messages=USER, max_tokens=3)
            assert answer.choices[0].message.content is not None


def prompt(model: str, text: str) -> bytes:
    return orjson.dumps({"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 5})


async def warm(client: openai.AsyncOpenAI) -> None:
    """The weights load in the background: wait for the first answer."""
    async with asyncio.timeout(60):
        while True:
            try:
                await client.chat.completions.create(model="local", messages=USER, max_tokens=1)
                return
            except openai.APIStatusError:
                await asyncio.sleep(0.2)
