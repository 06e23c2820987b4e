"""The drift trigger: margin in process in front of the fake upstream over loopback keeps a
production sample of `chat` (opted in to tuning, teacher `premium`); its cheap deployment starts
answering wrongly after the baseline window, the drift watch alerts, and the gateway records one
tuning proposal. `margin tune drift` finds the same proposal in the drift history (no duplicate);
with the trigger off, or for a group that did not opt in, nothing is proposed."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from tests.support.processes import fake_upstream
from tests.unit.rollout.test_rollout_gateway import stage_of

from margin.app import create_app
from margin.cli.tune_drift import drift as drift_command
from margin.config import parse_config
from margin.storage.memory import MemoryKeyStore
from margin.storage.rollouts import SampleRecord
from margin.tuning.dataset import read_manifest
from margin.tuning.drift import proposal_for, read_proposals

PROMPTS = [f"what is {i} times {i + 3}" for i in range(10)]


def config_text(data: Path, upstream: str, action: str = "propose") -> str:
    def deployment(name: str) -> str:
        return (
            f"  - {{name: {name}, provider: openai_compat, model: fake-{name}, base_url: '{upstream}/v1', "
            f'price: {{input: "1", output: "2"}}}}\n'
        )

    return (
        f"data_dir: {data}\ncache: {{enabled: false}}\n"
        "deployments:\n" + deployment("cheap") + deployment("premium") + "models:\n"
        "  - name: chat\n"
        "    deployments: [cheap]\n"
        "    sample: {share: 1.0, reeval_every_s: 3600, reeval_items: 10, baseline_runs: 2, drift_margin: 0.2}\n"
        "  - {name: premium, deployments: [premium]}\n"
        f"tuning: {{sources: [{{group: chat, teacher: premium, auto_train_base: '{data}/no-such-base.gguf'}}],\n"
        f"         min_examples: 5, drift: {{action: {action}}}}}\n"
    )  # fmt: skip


@pytest.fixture
def upstream() -> Iterator[str]:
    with fake_upstream() as url:
        yield url


async def test_a_drifting_cheap_tier_proposes_one_tuning_job(tmp_path: Path, upstream: str) -> None:
    text = config_text(tmp_path, upstream)
    (tmp_path / "margin.yaml").write_text(text)
    config = parse_config(text)
    app = create_app(config, key_store=MemoryKeyStore())
    async with app.router.lifespan_context(app):
        stage = stage_of(app)
        for i, prompt in enumerate(PROMPTS):
            asked = [{"role": "user", "content": prompt}]
            await stage.engine.service.store.add_sample(
                SampleRecord(f"s{i}", "chat", time.time() - 60 + i, f"req_{i}", "cheap", asked, prompt, {})
            )
        assert stage.drift is not None
        window = [await stage.drift.run_once("chat") for _ in range(2)]
        assert all(r.score == 1.0 and not r.drifted for r in window) and read_proposals(tmp_path) == []
        httpx.post(f"{upstream}/_fake/faults", json={"fake-cheap": "wrong=0.5"}).raise_for_status()
        drifted = await stage.drift.run_once("chat")
        await app.state.gateway.pipeline.recorder.queue.join()
    assert drifted.drifted
    proposals = read_proposals(tmp_path)
    assert [(p.run_id, p.model_group, p.deployment, p.teacher) for p in proposals] == [
        (drifted.run_id, "chat", "cheap", "premium")
    ]
    result = await asyncio.to_thread(CliRunner().invoke, drift_command, ["--config", str(tmp_path / "margin.yaml")])
    assert result.exit_code == 0, result.output
    line = f"chat: cheap scored {drifted.score:.3f} below its baseline 1.000 (drift run {drifted.run_id})"
    assert line in result.output
    assert "new " not in result.output  # the gateway recorded it already: the CLI adds no duplicate
    assert len(read_proposals(tmp_path)) == 1

    (tmp_path / "tuning" / "proposals.jsonl").unlink()  # as on a machine where no gateway recorded it
    started = await asyncio.to_thread(
        CliRunner().invoke, drift_command, ["--start", "--config", str(tmp_path / "margin.yaml")]
    )
    assert f"new  {line}" in started.output  # found again in the drift history, then acted on:
    fresh = [p for p in (tmp_path / "tuning" / "datasets").iterdir() if p.name.startswith("chat-drift-")]
    assert len(fresh) == 1 and sum(read_manifest(fresh[0]).counts.values()) == len(PROMPTS)  # fresh data
    assert started.exit_code == 1 and f"dataset {fresh[0].name} built, but no job started" in started.output
    assert "no-such-base.gguf" in started.output  # the base it could not load, named

    off = parse_config(config_text(tmp_path, upstream, action="off"))
    assert proposal_for(off, drifted) is None
    other = dataclasses.replace(drifted, model_group="premium", deployment="premium")
    assert proposal_for(config, other) is None  # premium did not opt in
