"""Streamed answers and the online judge in one gateway, in process (the fake provider):
- a streamed answer is graded, shadowed and judged like a non-streamed one once the stream has ended;
  a stream the client leaves is not (counted);
- the online judge's outcomes are counted per arm; an answer the judge could not read adds no score;
- its calls are ledger rows tagged `judge` of the rollout's experiment, never the tenant's, within
  the experiment budget, and a full judge queue drops and counts;
- a judge group that does not exist is a config error naming the place."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from margin.app import create_app
from margin.config import parse_config
from margin.pipeline.rollout_stage import RolloutStage
from margin.rollout.arms import JUDGE_OUTCOMES
from margin.storage.memory import MemoryKeyStore
from margin.storage.rollouts import ArmWindow

CONFIG = """
data_dir: {data}
cache: {{enabled: false}}
deployments:
  - {{name: big, provider: fake, model: big, price: {{input: "1", output: "2"}}, fake: {{chunk_delay_ms: {delay}}}}}
  - {{name: small, provider: fake, model: small, price: {{input: "0.1", output: "0.2"}}}}
  - {{name: echo, provider: fake, model: echo, price: {{input: "0.5", output: "0.5"}},
     fake: {{latency_ms: {judge_ms}}}}}
models:
  - name: chat
    deployments: [big]
    rollout:
      online_grader: {{type: regex, pattern: '^hi'}}
      shadow: {{share: {shadow}, min_requests: 1000, min_duration_s: 0, budget_usd: "{budget}"}}
      steps: [{{share: 0.5, min_requests: 1000, min_duration_s: 0}}]
      judge: {{model: judge, share: 1.0}}
  - {{name: judge, deployments: [echo]}}
rollouts: {{refresh_s: 60, decide_every_s: 60, flush_every_s: 60, judge_queue: {queue}, judge_concurrency: 1,
           answer_max_chars: {max_chars}}}
"""


def make_app(tmp: Path, **values: Any) -> Starlette:
    settings = {"delay": 0, "judge_ms": 0, "shadow": 1.0, "budget": "1.00", "queue": 200, "max_chars": 65536} | values
    return create_app(parse_config(CONFIG.format(data=tmp, **settings)), key_store=MemoryKeyStore())


def stage_of(app: Starlette) -> RolloutStage:
    stage = app.state.gateway.pipeline.router.rollouts
    assert isinstance(stage, RolloutStage)
    return stage


async def start(stage: RolloutStage, *, shadow: bool) -> str:
    service = stage.engine.service
    record = await service.start("chat", "small", actor="test")
    await service.promote(record.rollout_id, actor="test")  # gated
    if not shadow:
        await service.promote(record.rollout_id, actor="test")  # canary, straight
    await stage.engine.decide_all()
    await stage.engine.refresh()
    return record.rollout_id


async def settle(app: Starlette, stage: RolloutStage) -> None:
    for _ in range(3):  # shadow calls queue judge jobs; judge calls are recorded
        await stage.shadows.queue.join()
        await stage.grading.queue.join()
        await stage.judge.queue.queue.join()
        await app.state.gateway.pipeline.recorder.queue.join()
    await stage.engine.flush()


async def windows(stage: RolloutStage, rollout_id: str) -> dict[tuple[str, int], ArmWindow]:
    return {(w.arm, w.step): w for w in await stage.engine.service.store.windows(rollout_id)}


def judged(window: ArmWindow) -> dict[str, int]:
    counts = window.histograms.get("judge") or {}
    return {name: counts.get(i, 0) for i, name in enumerate(JUDGE_OUTCOMES) if counts.get(i)}


def streamed_body(i: int) -> dict[str, Any]:
    return {"model": "chat", "stream": True, "messages": [{"role": "user", "content": f"hi {i}"}]}


async def test_streamed_answers_are_graded_shadowed_and_judged(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.router.lifespan_context(app):
        stage = stage_of(app)
        rid = await start(stage, shadow=True)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
            for i in range(6):
                response = await client.post("/v1/chat/completions", json=streamed_body(i))
                assert response.status_code == 200 and "data: [DONE]" in response.text
        await settle(app, stage)
        got = await windows(stage, rid)
        stable, shadow = got[("stable", -1)], got[("shadow", -1)]
        assert stable.quality_n == 6 and stable.quality_sum == 6.0  # the online grader saw each whole answer
        assert shadow.requests == 6  # each streamed request mirrored (the shadow call is not streamed)
        # 6 shadow grades (the echo equals the stable answer) and no judge verdict: the echo judge is unparseable
        assert shadow.quality_n == 6 and shadow.quality_sum == 6.0
        assert judged(shadow) == {"unparseable": 6}
        metrics = app.state.gateway.metrics.render().decode()
        assert 'margin_rollout_judge_total{model_group="chat",outcome="unparseable"} 6.0' in metrics


async def test_a_stream_the_client_leaves_is_not_graded(tmp_path: Path) -> None:
    app = make_app(tmp_path, delay=30)
    async with app.router.lifespan_context(app):
        stage = stage_of(app)
        rid = await start(stage, shadow=True)
        await left_after_first_chunk(app, streamed_body(0))
        await settle(app, stage)
        got = await windows(stage, rid)
        assert ("shadow", -1) not in got or got[("shadow", -1)].requests == 0
        assert got[("stable", -1)].quality_n == 0
        metrics = app.state.gateway.metrics.render().decode()
        assert 'margin_rollout_streams_unjudged_total{model_group="chat",why="client_left"} 1.0' in metrics


async def test_a_streamed_answer_over_the_cap_is_not_graded(tmp_path: Path) -> None:
    app = make_app(tmp_path, max_chars=4)
    async with app.router.lifespan_context(app):
        stage = stage_of(app)
        rid = await start(stage, shadow=True)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
            for i in (1, 22, 333):  # answers "hi 1" (4 characters: graded), "hi 22", "hi 333" (over the cap)
                assert (await client.post("/v1/chat/completions", json=streamed_body(i))).status_code == 200
        await settle(app, stage)
        got = await windows(stage, rid)
        assert got[("stable", -1)].quality_n == 1 and got[("shadow", -1)].requests == 1
        metrics = app.state.gateway.metrics.render().decode()
        assert 'margin_rollout_streams_unjudged_total{model_group="chat",why="too_long"} 2.0' in metrics


async def left_after_first_chunk(app: Starlette, body: dict[str, Any]) -> None:
    """A raw ASGI request whose client disconnects once the first body chunk has arrived."""
    first_chunk = asyncio.Event()
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": json.dumps(body).encode(), "more_body": False}
        await first_chunk.wait()
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            first_chunk.set()

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions", "query_string": b"", "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"host", b"gw")], "client": ("127.0.0.1", 1),
        "server": ("gw", 80), "state": {},
    }  # fmt: skip
    await app(scope, receive, send)
    await asyncio.sleep(0.5)  # a drained stream ends in the background


async def test_judge_calls_are_the_experiments_rows_and_a_full_queue_drops(tmp_path: Path) -> None:
    app = make_app(tmp_path, judge_ms=300, queue=1)
    async with app.router.lifespan_context(app):
        stage = stage_of(app)
        rid = await start(stage, shadow=False)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
            for i in range(5):
                body = {"model": "chat", "messages": [{"role": "user", "content": f"hi {i}"}]}
                response = await client.post("/v1/chat/completions", json=body, headers={"x-margin-session": "one"})
                assert response.status_code == 200
        await settle(app, stage)
        got = await windows(stage, rid)
        arm = next(w for (name, step), w in got.items() if name in ("stable", "candidate") and step == 0)
        counts = judged(arm)
        assert counts.get("dropped", 0) >= 2 and counts.get("unparseable", 0) >= 1
        assert counts["dropped"] + counts["unparseable"] == 5
        assert arm.quality_n == 5  # the online grader only: no judge verdict added a score
        judge_cost = got[("judge", 0)].cost_total
        assert judge_cost > 0 and stage.engine.experiment_spent[rid] >= judge_cost
        metrics = app.state.gateway.metrics.render().decode()
        assert 'margin_rollout_judge_total{model_group="chat",outcome="queue_full"}' in metrics
    await asyncio.sleep(0)
    with sqlite3.connect(tmp_path / "margin.db") as conn:
        rows = conn.execute("SELECT key_id, team, tags, deployment, extra FROM ledger_attempts").fetchall()
    judge_rows = [r for r in rows if "judge" in r[2]]
    assert len(judge_rows) == 2 * counts["unparseable"]  # both orders asked, each its own request
    for key_id, team, _, deployment, extra in judge_rows:
        assert (key_id, team, deployment) == (f"rollout:{rid}", f"rollout:{rid}", "echo")
        assert json.loads(extra)["rollout_arm"] == "judge"
    tenant = [r for r in rows if "judge" not in r[2]]
    assert len(tenant) == 5 and all(not team.startswith("rollout:") for _, team, *_ in tenant)


async def test_a_spent_experiment_budget_stops_the_judge(tmp_path: Path) -> None:
    app = make_app(tmp_path, budget="0")
    async with app.router.lifespan_context(app):
        stage = stage_of(app)
        rid = await start(stage, shadow=False)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
            for i in range(3):
                body = {"model": "chat", "messages": [{"role": "user", "content": f"hi {i}"}]}
                assert (await client.post("/v1/chat/completions", json=body)).status_code == 200
        await settle(app, stage)
        got = await windows(stage, rid)
        assert sum(judged(w).get("dropped", 0) for w in got.values()) == 3
        assert ("judge", 0) not in got
        metrics = app.state.gateway.metrics.render().decode()
        assert 'margin_rollout_judge_total{model_group="chat",outcome="budget"} 3.0' in metrics


@pytest.mark.parametrize(
    ("judge", "message"),
    [
        ("nobody", "models[chat].rollout.judge.model: unknown model group 'nobody'"),
        ("chat", "models[chat].rollout.judge.model: a group cannot judge its own rollout"),
    ],
)
def test_a_judge_group_that_does_not_exist_is_a_config_error(tmp_path: Path, judge: str, message: str) -> None:
    text = CONFIG.format(data=tmp_path, delay=0, judge_ms=0, shadow=0, budget="1", queue=1, max_chars=1)
    with pytest.raises(Exception, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_config(text.replace("judge: {model: judge", f"judge: {{model: {judge}"))
