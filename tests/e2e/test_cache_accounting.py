"""Cache hits in the ledger (cost 0 plus the saved cost) and coalescing of identical in-flight calls."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from tests.support.ledger_rows import stored_row
from tests.support.processes import fake_upstream, gateway


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path]]:
    tmp = tmp_path_factory.mktemp("cache-accounting")
    with fake_upstream("--fault", "fake-paced=pace=0.05") as upstream:
        config = f"""
deployments:
  - {{name: up, provider: openai_compat, model: fake-paced, base_url: "{upstream}/v1",
     price: {{input: "2", output: "8"}}}}
models:
  - {{name: chat, deployments: [up]}}
"""
        with gateway(config, tmp) as url:
            yield url, upstream, tmp / "data" / "margin.db"


def streamed_text(sse: str) -> str:
    pieces = []
    for line in sse.splitlines():
        if line.startswith("data: {"):
            for choice in json.loads(line[6:]).get("choices", []):
                pieces.append(choice.get("delta", {}).get("content") or "")
    return "".join(pieces)


def test_a_hit_is_a_zero_cost_row_that_records_what_it_saved(served: tuple[str, str, Path]) -> None:
    url, _, db = served
    body = {"model": "chat", "temperature": 0, "messages": [{"role": "user", "content": f"q {uuid.uuid4()}"}]}
    first = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)
    second = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)
    assert second.headers["x-margin-cache"] == "exact"
    assert second.json()["choices"] == first.json()["choices"]
    paid, hit = stored_row(db, first.headers["x-request-id"]), stored_row(db, second.headers["x-request-id"])
    assert Decimal(paid["cost_total"]) > 0 and paid["cache_result"] in ("miss", "none")
    assert Decimal(hit["cost_total"]) == 0 and hit["cache_result"] == "exact"
    assert Decimal(hit["saved_cost"]) == Decimal(paid["cost_total"])


def test_identical_in_flight_requests_share_one_upstream_call(served: tuple[str, str, Path]) -> None:
    url, upstream, db = served
    prompt = f"coalesce {uuid.uuid4()}"
    before = httpx.get(f"{upstream}/_fake/stats").json()["calls"].get("fake-paced", 0)

    def body(stream: bool) -> dict[str, object]:
        return {"model": "chat", "temperature": 0, "stream": stream, "messages": [{"role": "user", "content": prompt}]}

    # One client made up front: building one per thread (an SSL context each) takes longer than the
    # leader's whole call on 2 cores, and the followers must arrive while it is in flight.
    http = httpx.Client(timeout=30)

    def ask(stream: bool) -> httpx.Response:
        return http.post(f"{url}/v1/chat/completions", json=body(stream))

    started = threading.Event()

    def lead() -> httpx.Response:
        with http.stream("POST", f"{url}/v1/chat/completions", json=body(True)) as r:
            started.set()  # the leader's upstream call is in flight: everyone else arrives during it
            r.read()
            return r

    with ThreadPoolExecutor(6) as pool:
        leader = pool.submit(lead)
        assert started.wait(10)
        followers = list(pool.map(ask, [False, True, False, True, False]))
        answers = [leader.result(), *followers]
    assert all(a.status_code == 200 for a in answers)
    assert httpx.get(f"{upstream}/_fake/stats").json()["calls"]["fake-paced"] == before + 1
    streamed = [a.text for a in answers if a.headers["content-type"].startswith("text/event-stream")]
    assert len(streamed) == 3
    assert all(text.rstrip().endswith("data: [DONE]") and streamed_text(text) == prompt for text in streamed)
    plain = [a for a in answers if a.headers["content-type"].startswith("application/json")]
    assert all(a.json()["choices"][0]["message"]["content"] == prompt for a in plain)
    kinds = [a.headers["x-margin-cache"] for a in answers]
    assert kinds[0] == "miss" and "coalesced" in kinds[1:] and set(kinds[1:]) <= {"coalesced", "exact"}
    hits = [stored_row(db, a.headers["x-request-id"]) for a in answers[1:]]
    assert all(Decimal(h["cost_total"]) == 0 and Decimal(h["saved_cost"]) > 0 for h in hits)
