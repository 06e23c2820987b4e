"""The drift re-evaluation graded by the group's judge (issue 17, section 4): margin in process in
front of the fake upstream over loopback, whose `fake-judge` model answers judge prompts (the `judge`
fault: "I do not know." scores 0, any other answer the top of the scale; `judge_bias`: a judge whose
two orders never agree). The stable deployment starts answering wrongly (`wrong=`) after the
baseline window: the judge's verdicts raise the drift alert. A self-contradicting judge makes the
run inconclusive, never a pass. Every judge call is a ledger row of margin's drift principal tagged
`judge` and `drift`."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from starlette.applications import Starlette

from margin.app import create_app
from margin.cli.eval_drift import history
from margin.config import parse_config
from margin.errors import ConfigError
from margin.evals.graders.judge import pairwise_prompt, read_score, read_winner, scored_prompt
from margin.evals.graders.protocol import Sample
from margin.evals.items import JudgeSettings
from margin.providers.fake.engine import answered_wrongly, biased_judge_reply
from margin.providers.fake.faults import Fault
from margin.rollout.drift import DriftWatch
from margin.storage.memory import MemoryKeyStore
from margin.storage.rollouts import SampleRecord
from tests.support.processes import fake_upstream
from tests.unit.rollout.test_rollout_gateway import stage_of

ADMIN = "sk-admin-drift-judge-0123456789"
PROMPTS = [f"what is {i} times {i + 3}" for i in range(10)]


def config(data: Path, upstream: str, *, budget: str = "1.00") -> str:
    def deployment(name: str) -> str:
        return (
            f"  - {{name: {name}, provider: openai_compat, model: fake-{name}, base_url: '{upstream}/v1', "
            f'price: {{input: "1", output: "2"}}}}\n'
        )

    return (
        f"data_dir: {data}\ncache: {{enabled: false}}\nserver: {{admin_key: {ADMIN}}}\n"
        "deployments:\n" + deployment("stable") + deployment("judge") + "models:\n"
        "  - name: chat\n"
        "    deployments: [stable]\n"
        "    rollout: {judge: {model: judge, mode: pairwise, rubric: 'Is the arithmetic right?'}}\n"
        f"    sample: {{share: 1.0, reeval_every_s: 3600, reeval_items: 10, baseline_runs: 2, drift_margin: 0.2,\n"
        f"             reeval_grader: judge, reeval_min_verdicts: 5, judge_budget_usd: '{budget}'}}\n"
        "  - {name: judge, deployments: [judge]}\n"
    )  # fmt: skip


@pytest.fixture
def upstream() -> Iterator[str]:
    with fake_upstream("--fault", "fake-judge=judge") as url:
        yield url


@asynccontextmanager
async def served(data: Path, upstream: str, *, budget: str = "1.00") -> AsyncIterator[tuple[Starlette, DriftWatch]]:
    app = create_app(parse_config(config(data, upstream, budget=budget)), key_store=MemoryKeyStore())
    async with app.router.lifespan_context(app):
        stage = stage_of(app)
        for i, prompt in enumerate(PROMPTS):  # what production asked, and was answered right then
            asked = [{"role": "user", "content": prompt}]
            await stage.engine.service.store.add_sample(
                SampleRecord(f"s{i}", "chat", 1e9 + i, f"req_{i}", "stable", asked, prompt, {})
            )
        assert stage.drift is not None
        yield app, stage.drift
        await app.state.gateway.pipeline.recorder.queue.join()
    await asyncio.sleep(0)


def fault(upstream: str, **faults: str) -> None:
    response = httpx.post(f"{upstream}/_fake/faults", json=faults)
    assert response.status_code == 200, response.text


def ledger(data: Path) -> list[tuple[str, str, str, str]]:
    with sqlite3.connect(data / "margin.db") as conn:
        return conn.execute("SELECT key_id, team, tags, model_group FROM ledger_attempts").fetchall()


async def test_the_judge_sees_the_stable_deployment_drift_and_its_calls_are_the_drift_principals(
    tmp_path: Path, upstream: str
) -> None:
    async with served(tmp_path, upstream) as (app, drift):
        window = [await drift.run_once("chat") for _ in range(2)]
        assert [(r.score, r.in_baseline, r.inconclusive) for r in window] == [(1.0, True, False)] * 2
        assert [(r.judge_agreed, r.judge_disagreed, r.judge_unparseable, r.judge_failed) for r in window] == [
            (10, 0, 0, 0)
        ] * 2
        assert window[0].judge_spent_usd is not None and window[0].judge_spent_usd > 0
        fault(upstream, **{"fake-stable": "wrong=0.5"})  # the stable deployment starts answering wrongly
        wrong = sum(answered_wrongly(p, 0.5) for p in PROMPTS)
        assert 3 <= wrong <= 7  # the share the fake spoils, by a hash of each prompt: the same every run
        drifted = await drift.run_once("chat")
        assert drifted.score == pytest.approx(1 - wrong / 10) and drifted.baseline == 1.0
        assert drifted.drifted and not drifted.inconclusive and not drifted.in_baseline
        assert drifted.judge_agreed == 10 and drifted.judge_disagreed == 0
        alert = stage_of(app).engine.service.alerts.sent[-1]
        assert alert["type"] == "margin.quality_drift" and alert["run_id"] == drifted.run_id
        assert alert["judge"]["agreed"] == 10
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
            admin = {"authorization": f"Bearer {ADMIN}"}
            listed = await client.get("/admin/drift/history?group=chat&limit=1", headers=admin)
            assert listed.status_code == 200, listed.text
            run = listed.json()["data"][0]
            assert run["drifted"] and not run["inconclusive"]
            judge = run["judge"]
            assert judge == {
                "agreed": 10,
                "disagreed": 0,
                "unparseable": 0,
                "failed": 0,
                "spent_usd": judge["spent_usd"],
            }
            assert Decimal(judge["spent_usd"]) == drifted.judge_spent_usd
    rows = ledger(tmp_path)
    judged = [r for r in rows if r[3] == "judge"]
    assert len(judged) == 3 * 10 * 2  # three runs, ten answers, both orders
    assert all(k == "margin:drift" and t == "margin:drift" for k, t, _, _ in judged)  # never a tenant's
    assert all(set(json.loads(tags)) == {"judge", "drift"} for _, _, tags, _ in judged)
    reasked = [r for r in rows if r[3] != "judge"]  # the stable deployment, asked by name
    assert len(reasked) == 3 * 10 and all(set(json.loads(tags)) == {"eval", "drift"} for _, _, tags, _ in reasked)
    assert len(rows) == len(judged) + len(reasked)  # nothing else: no tenant was charged


async def test_a_judge_that_disagrees_with_itself_makes_the_run_inconclusive(tmp_path: Path, upstream: str) -> None:
    async with served(tmp_path, upstream) as (app, drift):
        window = [await drift.run_once("chat") for _ in range(2)]
        assert all(r.in_baseline and r.score == 1.0 for r in window)
        fault(upstream, **{"fake-stable": "wrong=0.5", "fake-judge": "judge_bias"})
        sent = len(stage_of(app).engine.service.alerts.sent)
        run = await drift.run_once("chat")
        assert run.inconclusive and not run.drifted and not run.in_baseline
        assert (run.judge_agreed, run.judge_disagreed, run.judge_unparseable, run.judge_failed) == (0, 10, 0, 0)
        assert run.score is None and run.baseline == 1.0  # no verdict is no score: not a pass
        assert len(stage_of(app).engine.service.alerts.sent) == sent  # no alert
        kept = (await stage_of(app).engine.service.store.drift_runs(model_group="chat", limit=1))[0]
        assert kept == run  # recorded as inconclusive, with the judge's counts
    args = ["--group", "chat", "--limit", "1", "--config", str(write_config(tmp_path, upstream))]
    result = await asyncio.to_thread(CliRunner().invoke, history, args)
    assert result.exit_code == 0, result.output
    assert "INCONCLUSIVE" in result.output and "judge agreed 0  disagreed 10  unparseable 0  failed 0" in result.output


async def test_the_judge_budget_bounds_a_run(tmp_path: Path, upstream: str) -> None:
    async with served(tmp_path, upstream, budget="0.0001") as (_, drift):
        run = await drift.run_once("chat")
        assert run.judge_agreed is not None and run.judge_failed is not None
        assert 1 <= run.judge_agreed < 5 and run.judge_agreed + run.judge_failed == 10
        assert run.judge_spent_usd is not None and run.judge_spent_usd >= Decimal("0.0001")
        assert run.inconclusive and not run.in_baseline


def write_config(data: Path, upstream: str) -> Path:
    path = data / "margin.yaml"
    path.write_text(config(data, upstream))
    return path


@pytest.mark.parametrize(
    ("sample", "rollout", "where"),
    [
        ("reeval_grader: judge", "", "models[chat].sample.reeval_grader: a judge needs a model"),
        ("reeval_grader: {type: judge, model: nope}", "", "sample.reeval_grader.model: unknown model group 'nope'"),
        ("reeval_grader: {type: judge, model: chat}", "", "sample.reeval_grader.model: a group cannot judge"),
        ("reeval_grader: {type: judge, mode: pairwise}", "    rollout: {judge: {model: judge}}\n",
         "models[chat].sample.reeval_grader.mode"),
        ("reeval_grader: {type: judge, model: judge}, reeval_items: 5", "",
         "sample.reeval_min_verdicts: 10 agreed verdicts can never come from reeval_items: 5"),
    ],
)  # fmt: skip
def test_a_drift_judge_that_cannot_be_is_a_config_error_naming_its_place(sample: str, rollout: str, where: str) -> None:
    text = (
        "deployments:\n  - {name: big, provider: fake, model: big}\n  - {name: j, provider: fake, model: j}\n"
        f"models:\n  - name: chat\n    deployments: [big]\n{rollout}    sample: {{reeval_every_s: 3600, {sample}}}\n"
        "  - {name: judge, deployments: [j]}\n"
    )
    with pytest.raises(ConfigError, match=re.escape(where)):
        parse_config(text)


def test_the_fakes_biased_judge_never_agrees_with_itself() -> None:
    """The `judge_bias` fault, read by the judge grader's own parsers, in both orders of each mode."""
    settings = JudgeSettings(model="judge")
    sample = Sample([{"role": "user", "content": "what is 2 plus 2"}], "4")
    assert Fault.parse("judge_bias").judge_bias
    for reference in (None, "4"):
        orders = [scored_prompt(settings, sample, reference, swapped) for swapped in (False, True)]
        assert [read_score(biased_judge_reply(p), settings.scale).score for p in orders] == [1.0, 0.0]
    winners = [
        read_winner(biased_judge_reply(pairwise_prompt(settings, sample, "4", swapped)), swapped).winner
        for swapped in (False, True)
    ]
    assert winners == ["reference", "answer"]
