"""The Cache page's routes table (issue 18, 2): per route in the semantic cache's shadow record, the
would-be hit rate and the estimated precision with its one-sided 95% Clopper-Pearson lower bound, at
the route's own decision (cosine threshold or min_probability), page and twin alike, read as the
record grows."""

from __future__ import annotations

import asyncio
import html
from pathlib import Path

import pytest

from margin.caching.semantic.shadow import ShadowRecord
from tests.support.dashboard import ADMIN, FIGURE, dashboard_app, logged_in, twin_value

# after the base config's models: a second model, then the cache with a shadow route for each
CACHE = """  - {{name: faq, deployments: [small]}}
cache:
  backend: memory
  engine: {{embedder: hashing}}
  shadow_path: {record}
  routes:
    chat: {{semantic: {{enabled: true, mode: shadow, decision: learned, min_probability: 0.9}}}}
    faq: {{semantic: {{enabled: true, mode: shadow, threshold: 0.95}}}}
"""


def append(path: Path, rows: list[ShadowRecord]) -> None:
    with path.open("ab") as out:
        out.write(b"".join(r.to_json() + b"\n" for r in rows))


def test_the_cache_page_shows_each_routes_hit_rate_and_estimated_precision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = tmp_path / "shadow.jsonl"
    # chat (learned, at p >= 0.9): 400 agreeing would-be hits, 30 below 0.9 that disagree, 70 with no candidate
    append(record, [ShadowRecord("chat", 0.0, 0.97, True, True, 0.99) for _ in range(400)])
    append(record, [ShadowRecord("chat", 0.0, 0.97, True, False, 0.5) for _ in range(30)])
    append(record, [ShadowRecord("chat", 0.0, None) for _ in range(70)])
    # faq (cosine 0.95): 9 of 10 above the threshold agree
    append(record, [ShadowRecord("faq", 0.0, 0.97, True, i != 0) for i in range(10)])

    async def run() -> None:
        async with dashboard_app(tmp_path, monkeypatch, CACHE, record=record) as opened:
            client = opened.client
            bearer = {"authorization": f"Bearer {ADMIN}"}
            twin = (await client.get("/admin/api/cache", headers=bearer)).json()
            routes = {row[0]: row for row in twin["tables"]["routes"]["rows"]}
            # lower bounds: 0.05 ** (1 / 400) for 400 of 400; 9 of 10 by the beta quantile (scipy: 0.6058)
            assert routes["chat"] == ["chat", "shadow", "learned", "0.9", 500, 400, "0.8000", 400, "1.0000",
                                      "0.9925"]  # fmt: skip
            assert routes["faq"] == ["faq", "shadow", "cosine", "0.95", 10, 10, "1.0000", 9, "0.9000", "0.6058"]
            page = await client.get("/dashboard/cache", headers={"cookie": f"margin_session={await logged_in(client)}"})
            shown = dict(FIGURE.findall(page.text))
            for i, row in enumerate(twin["tables"]["routes"]["rows"]):
                for j in range(len(row)):
                    path = f"tables.routes.rows.{i}.{j}"
                    assert html.unescape(shown[path]) == twin_value(twin, path), path
            append(record, [ShadowRecord("faq", 1.0, 0.99, True, False)])  # the record grows
            again = (await client.get("/admin/api/cache", headers=bearer)).json()
            faq = next(row for row in again["tables"]["routes"]["rows"] if row[0] == "faq")
            assert faq[4:9] == [11, 11, "1.0000", 9, "0.8182"]

    asyncio.run(run())
