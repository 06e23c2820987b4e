"""A rollout inside one gateway, in process: the split is sticky by session and honours the share,
every ledger row names its arm, an abort sends everyone back to stable, a restarted gateway resumes
the rollout where it was."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from starlette.applications import Starlette

from margin.app import create_app
from margin.config import parse_config
from margin.pipeline.rollout_stage import RolloutStage
from margin.storage.memory import MemoryKeyStore

CONFIG = """
data_dir: {data}
cache: {{enabled: false}}
deployments:
  - {{name: big, provider: fake, model: big, price: {{input: "1", output: "2"}}}}
  - {{name: small, provider: fake, model: small, price: {{input: "0.1", output: "0.2"}}}}
models:
  - name: chat
    deployments: [big]
    rollout:
      steps: [{{share: 0.3, min_requests: 10, min_duration_s: 0}}, {{share: 0.6, min_requests: 10, min_duration_s: 0}}]
rollouts: {{refresh_s: 60, decide_every_s: 60, flush_every_s: 60}}
"""


def stage_of(app: Starlette) -> RolloutStage:
    stage = app.state.gateway.pipeline.router.rollouts
    assert isinstance(stage, RolloutStage)
    return stage


@asynccontextmanager
async def gateway(data: Path) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    app = create_app(parse_config(CONFIG.format(data=data)), key_store=MemoryKeyStore())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            yield app, client


async def ask(client: httpx.AsyncClient, session: str) -> str:
    response = await client.post(
        "/v1/chat/completions", headers={"x-margin-session": session},
        json={"model": "chat", "messages": [{"role": "user", "content": f"hi {session}"}]},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    return str(response.headers["x-margin-route"]).split("deployment=")[1].split(";")[0]


async def test_split_sticky_tagged_and_rolled_back(tmp_path: Path) -> None:
    async with gateway(tmp_path) as (app, client):
        stage = stage_of(app)
        service = stage.engine.service
        record = await service.start("chat", "small", actor="test")
        await service.record_gate(record.rollout_id, passed=True, actor="test", reason="skipped", verdict={})
        made = await stage.engine.decide_all()  # gated -> canary step 1 (no shadow configured)
        assert [(r.state, r.step) for r, _ in made] == [("canary", 0)]
        answered = {s: await ask(client, s) for s in (f"s{i}" for i in range(300))}
        share = Counter(answered.values())["small"] / len(answered)
        assert 0.22 < share < 0.38
        again = {s: await ask(client, s) for s in list(answered)[:40]}
        assert all(answered[s] == arm for s, arm in again.items())  # one session, one arm
        await app.state.gateway.pipeline.recorder.queue.join()  # the record stage has fed the signals
        await stage.engine.flush()
        windows = {w.arm: w for w in await service.store.windows(record.rollout_id)}
        assert windows["candidate"].requests + windows["stable"].requests == 340
        await service.abort(record.rollout_id, actor="test")
        await stage.engine.refresh()
        assert {await ask(client, f"s{i}") for i in range(30)} == {"big"}
    await asyncio.sleep(0)
    with sqlite3.connect(tmp_path / "margin.db") as conn:
        extras = [json.loads(e) for (e,) in conn.execute("SELECT extra FROM ledger_attempts")]
    arms = Counter((e.get("rollout_arm"), e.get("rollout_step")) for e in extras if e.get("rollout"))
    assert arms[("candidate", "0")] > 0 and arms[("stable", "0")] > 0
    assert sum(1 for e in extras if not e.get("rollout")) == 30  # after the abort: no rollout


async def test_a_restarted_gateway_resumes_the_rollout(tmp_path: Path) -> None:
    async with gateway(tmp_path) as (app, _):
        service = stage_of(app).engine.service
        record = await service.start("chat", "small", actor="test")
        await service.promote(record.rollout_id, actor="test")  # pending -> gated
        await service.promote(record.rollout_id, actor="test")  # gated -> canary step 1
        await service.promote(record.rollout_id, actor="test")  # step 2
    async with gateway(tmp_path) as (app, client):
        split = stage_of(app).engine.split.get("chat")
        assert split is not None and split.step == 1 and split.candidate_bp == 6000
        answered = Counter([await ask(client, f"u{i}") for i in range(200)])
        # 200 sessions on a 60% arm hashed with a fresh rollout id: binomial sd 0.035, so +/-0.1 (2.9 sd)
        # failed about once in 250 runs (seen in CI at 141/200); +/-0.16 (4.6 sd) still tells 60% from 50/50.
        assert 0.44 < answered["small"] / 200 < 0.76


SHADOW_CONFIG = """
data_dir: {data}
cache: {{enabled: false}}
deployments:
  - {{name: big, provider: fake, model: big, price: {{input: "1", output: "2"}}}}
  - {{name: small, provider: fake, model: small, price: {{input: "0.1", output: "0.2"}}}}
models:
  - name: chat
    deployments: [big]
    rollout:
      shadow: {{share: 1.0, min_requests: 10, min_duration_s: 0, budget_usd: "{budget}"}}
rollouts: {{refresh_s: 60, decide_every_s: 60, flush_every_s: 60}}
"""


async def test_shadow_calls_are_metered_as_the_experiment_and_graded(tmp_path: Path) -> None:
    app = create_app(parse_config(SHADOW_CONFIG.format(data=tmp_path, budget="1.00")), key_store=MemoryKeyStore())
    async with app.router.lifespan_context(app):
        stage = stage_of(app)
        service = stage.engine.service
        record = await service.start("chat", "small", actor="test")
        await service.promote(record.rollout_id, actor="test")  # gated
        assert [(r.state, r.step) for r, _ in await stage.engine.decide_all()] == [("shadow", -1)]
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
            for i in range(30):
                assert await ask(client, f"u{i}") == "big"  # the client is only ever answered by stable
        await stage.shadows.queue.join()
        await app.state.gateway.pipeline.recorder.queue.join()
        await stage.engine.flush()
        windows = {w.arm: w for w in await service.store.windows(record.rollout_id)}
        shadow = windows["shadow"]
        assert shadow.requests == 30 and shadow.quality_n == 30 and shadow.quality_sum == 30.0  # the fake echoes
        assert shadow.cost_total > 0
        made = await stage.engine.decide_all()
        assert [(r.state, r.step) for r, _ in made] == [("canary", 0)]
    await asyncio.sleep(0)
    with sqlite3.connect(tmp_path / "margin.db") as conn:
        rows = conn.execute("SELECT team, tags, deployment, request_id FROM ledger_attempts WHERE tags LIKE '%shadow%'")
        shadows = rows.fetchall()
    assert len(shadows) == 30
    assert all(team == f"rollout:{record.rollout_id}" and deployment == "small" for team, _, deployment, _ in shadows)
    assert all(rid.endswith("-shadow") for *_, rid in shadows)


async def test_a_spent_experiment_budget_drops_shadow_calls(tmp_path: Path) -> None:
    app = create_app(parse_config(SHADOW_CONFIG.format(data=tmp_path, budget="0")), key_store=MemoryKeyStore())
    async with app.router.lifespan_context(app):
        stage = stage_of(app)
        record = await stage.engine.service.start("chat", "small", actor="test")
        await stage.engine.service.promote(record.rollout_id, actor="test")
        await stage.engine.decide_all()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
            for i in range(5):
                await ask(client, f"u{i}")
        await app.state.gateway.pipeline.recorder.queue.join()
        await stage.engine.flush()
        windows = {w.arm: w for w in await stage.engine.service.store.windows(record.rollout_id)}
        assert windows["shadow"].dropped == 5 and windows["shadow"].requests == 0
        metrics = app.state.gateway.metrics.render().decode()
        assert 'margin_rollout_shadow_dropped_total{model_group="chat",why="budget"} 5.0' in metrics


SAMPLE_CONFIG = """
data_dir: {data}
cache: {{enabled: false}}
deployments:
  - {{name: big, provider: fake, model: big, price: {{input: "1", output: "2"}}}}
models:
  - {{name: chat, deployments: [big], sample: {{share: 1.0, max_items: 3}}}}
  - {{name: other, deployments: [big]}}
"""


async def test_production_samples_are_redacted_bounded_and_exported(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from margin.cli.eval_sample import export

    text = SAMPLE_CONFIG.format(data=tmp_path)
    app = create_app(parse_config(text), key_store=MemoryKeyStore())
    async with app.router.lifespan_context(app):
        stage = stage_of(app)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
            for i in range(5):
                said = f"mail ana{i}@example.com, card 4111 1111 1111 1111"
                body = {"model": "chat", "messages": [{"role": "user", "content": said}]}
                assert (await client.post("/v1/chat/completions", json=body)).status_code == 200
            other = {"model": "other", "messages": [{"role": "user", "content": "not sampled"}]}
            assert (await client.post("/v1/chat/completions", json=other)).status_code == 200
        await stage.sampling.queue.join()
        kept = await stage.engine.service.store.samples("chat", limit=10)
        assert len(kept) == 5  # pruned on the first write of each 100
        assert all(s.messages[0]["content"] == "mail [EMAIL], card [CARD]" for s in kept)
        assert all(s.answer == "mail [EMAIL], card [CARD]" for s in kept)  # the fake echoes: redacted too
        assert kept[0].redactions == {"EMAIL": 2, "CARD": 2}
        assert await stage.engine.service.store.samples("other", limit=10) == []
    (tmp_path / "margin.yaml").write_text(text)
    args = ["chat", "--config", str(tmp_path / "margin.yaml"), "--limit", "2"]
    result = await asyncio.to_thread(CliRunner().invoke, export, args)  # the command runs its own loop
    assert result.exit_code == 0, result.output
    items = [json.loads(line) for line in result.output.splitlines()]
    assert len(items) == 2 and items[0]["reference"] == "mail [EMAIL], card [CARD]"
    assert items[0]["tags"] == ["production", "chat", "deployment:big"]
    assert "ana0@example.com" not in (tmp_path / "margin.db").read_bytes().decode("latin-1")


DRIFT_CONFIG = """
data_dir: {data}
cache: {{enabled: false}}
deployments:
  - {{name: big, provider: fake, model: big, price: {{input: "1", output: "2"}}}}
models:
  - name: chat
    deployments: [big]
    sample: {{share: 1.0, reeval_every_s: 3600, reeval_items: 10, baseline_runs: 2, drift_margin: 0.2}}
"""


async def test_drift_re_evaluation_alerts_when_the_stable_answers_change(tmp_path: Path) -> None:
    from margin.storage.rollouts import SampleRecord

    app = create_app(parse_config(DRIFT_CONFIG.format(data=tmp_path)), key_store=MemoryKeyStore())
    async with app.router.lifespan_context(app):
        stage = stage_of(app)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
            for i in range(6):
                body = {"model": "chat", "messages": [{"role": "user", "content": f"what is {i} plus {i}"}]}
                assert (await client.post("/v1/chat/completions", json=body)).status_code == 200
        await stage.sampling.queue.join()
        drift = stage.drift
        assert drift is not None
        runs = [await drift.run_once("chat") for _ in range(2)]  # the fake echoes: same answers as sampled
        assert [(r.score, r.baseline, r.drifted) for r in runs] == [(1.0, None, False), (1.0, None, False)]
        store = stage.engine.service.store
        for i in range(6):  # production answers that today's deployment no longer gives
            asked = [{"role": "user", "content": f"q{i}"}]
            await store.add_sample(SampleRecord(f"old{i}", "chat", 2e9 + i, f"req_old{i}", "big", asked, "else", {}))
        drifted = await drift.run_once("chat")
        assert drifted.baseline == 1.0 and drifted.score is not None and drifted.score < 0.5 and drifted.drifted
        alert = stage.engine.service.alerts.sent[-1]
        assert alert["type"] == "margin.quality_drift" and alert["model_group"] == "chat"
        await app.state.gateway.pipeline.recorder.queue.join()
    await asyncio.sleep(0)
    with sqlite3.connect(tmp_path / "margin.db") as conn:
        tagged = conn.execute("SELECT COUNT(*) FROM ledger_attempts WHERE tags LIKE '%drift%'").fetchone()[0]
    assert tagged == 2 * 6 + 10  # every re-asked sample is an ordinary, metered request


ADMIN = "sk-admin-drift-test-0123456789"
DRIFT_HISTORY_CONFIG = (
    DRIFT_CONFIG.replace("drift_margin: 0.2}", "drift_margin: 0.2, history_runs: 3}")
    + f"server: {{{{admin_key: {ADMIN}}}}}\n"
)


async def test_drift_history_is_kept_and_a_restarted_gateway_keeps_its_baseline(tmp_path: Path) -> None:
    """Every re-evaluation is a row in the database; the baseline window survives a restart, so the
    restarted gateway compares against it (not against a new baseline built from drifted runs); the
    history is pruned to `history_runs` but never loses the window; CLI and admin API read it."""
    import jsonschema
    from click.testing import CliRunner

    from margin.cli.eval_drift import history
    from margin.rollout.drift import DriftWatch
    from margin.storage.rollouts import SampleRecord

    text = DRIFT_HISTORY_CONFIG.format(data=tmp_path)
    app = create_app(parse_config(text), key_store=MemoryKeyStore())
    async with app.router.lifespan_context(app):
        stage = stage_of(app)
        store = stage.engine.service.store
        for i in range(3):
            asked = [{"role": "user", "content": f"what is {i} plus {i}"}]
            await store.add_sample(
                SampleRecord(f"s{i}", "chat", 1e9 + i, f"req_{i}", "big", asked, asked[0]["content"], {})
            )
        drift = stage.drift
        assert drift is not None
        replica = DriftWatch(drift.store, drift.groups, drift.stable, drift.completer, drift.alerts)  # another one
        window = [await drift.run_once("chat"), await replica.run_once("chat")]  # the fake echoes: 1.0 each
        assert [(r.score, r.in_baseline, r.baseline) for r in window] == [(1.0, True, None), (1.0, True, None)]
        compared = await drift.run_once("chat")  # the window is full, with the other replica's run
        assert (compared.in_baseline, compared.baseline, compared.baseline_runs) == (False, 1.0, 2)
        assert not compared.drifted
    app = create_app(parse_config(text), key_store=MemoryKeyStore())  # a restart: nothing kept in memory
    async with app.router.lifespan_context(app):
        stage = stage_of(app)
        store = stage.engine.service.store
        for i in range(3):  # production answers that today's deployment no longer gives
            asked = [{"role": "user", "content": f"q{i}"}]
            await store.add_sample(SampleRecord(f"old{i}", "chat", 2e9 + i, f"req_old{i}", "big", asked, "else", {}))
        assert stage.drift is not None
        runs = [await stage.drift.run_once("chat") for _ in range(3)]
        assert all(r.drifted and r.baseline == 1.0 and not r.in_baseline for r in runs)
        assert runs[0].baseline_runs == 2 and runs[0].baseline_to == window[1].at
        first = runs[0]
        assert first.score is not None and first.ci_low is not None and first.ci_high is not None
        assert first.ci_low <= first.score <= first.ci_high
        kept = await store.drift_runs(model_group="chat", limit=10)
        assert [r.run_id for r in kept] == [r.run_id for r in reversed(runs)] + [r.run_id for r in reversed(window)]
        assert kept[-1] == window[0]  # history_runs: the 3 newest, and the window's two (not `compared`)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
            assert (await client.get("/admin/drift/history")).status_code == 401
            admin = {"authorization": f"Bearer {ADMIN}"}
            listed = await client.get("/admin/drift/history?group=chat&limit=2", headers=admin)
            assert listed.status_code == 200, listed.text
            assert [r["run_id"] for r in listed.json()["data"]] == [runs[2].run_id, runs[1].run_id]
            assert listed.json()["data"][0]["drifted"] is True and listed.json()["data"][0]["baseline"] == 1.0
            document = (await client.get("/openapi.json")).json()
            schema = document["paths"]["/admin/drift/history"]["get"]["responses"]["200"]["content"]
            jsonschema.validate(listed.json(), {**schema["application/json"]["schema"], "components": {}})
            unknown = await client.get("/admin/drift/history?group=nope", headers=admin)
            assert unknown.status_code == 404 and unknown.json()["error"]["param"] == "group"
            bad = await client.get("/admin/drift/history?limit=0", headers=admin)
            assert bad.status_code == 400 and "limit" in bad.json()["error"]["message"]
    (tmp_path / "margin.yaml").write_text(text)
    args = ["--group", "chat", "--limit", "4", "--config", str(tmp_path / "margin.yaml")]
    result = await asyncio.to_thread(CliRunner().invoke, history, args)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 4 and "DRIFT (margin 0.2)" in lines[0] and "baseline 1.000 (2 runs" in lines[0]
    assert "score 1.000 [1.000, 1.000]  baseline run" in lines[3]
    result = await asyncio.to_thread(CliRunner().invoke, history, [*args, "--json"])
    assert [r["run_id"] for r in json.loads(result.output)["runs"]][:1] == [runs[2].run_id]
    result = await asyncio.to_thread(CliRunner().invoke, history, ["--group", "nope", *args[2:]])
    assert result.exit_code != 0 and "unknown model group 'nope'" in result.output
