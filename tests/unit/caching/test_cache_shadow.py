"""Shadow mode: a route looks up but serves nothing semantic; would-be hits are graded against the
fresh answer off the request path, and `margin cache calibrate --from-shadow` / `shadow-report`
read the record."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from test_cache_support import context, request

from margin.caching.backends.memory import MemoryCacheBackend
from margin.caching.semantic.batcher import MicroBatcher
from margin.caching.semantic.engine import SemanticEngine
from margin.caching.semantic.shadow import (
    AnswerAgreement,
    ShadowProbe,
    ShadowRecord,
    ShadowRecorder,
    answer_text,
    by_route,
    read_records,
)
from margin.cli.cache import cache
from margin.config.model import CacheConfig, SemanticCacheConfig
from margin.embedding import HashingEmbedder
from margin.evals.graders.protocol import Grade, Sample
from margin.pipeline.cache import CacheHit, CacheStage
from margin.types import ChatRequest, ChatResult, Usage

ANSWERS = {"password": "Hold the reset button for ten seconds.", "capital": "Paris."}


@dataclass
class Oracle:
    """An upstream whose answer depends on the topic, so paraphrases get the same answer."""

    calls: int = 0

    async def chat(self, req: ChatRequest) -> ChatResult:
        self.calls += 1
        question = str(req.messages[-1]["content"])
        text = next((a for topic, a in ANSWERS.items() if topic in question), f"About: {question}")
        body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}
        return ChatResult(body=body, usage=Usage(input_uncached=5, output=5), model="big")


def shadow_stage(tmp_path: Path) -> CacheStage:
    backend = MemoryCacheBackend()
    semantic = SemanticCacheConfig(enabled=True, mode="shadow", shadow_floor=0.3, threshold=0.5)
    config = CacheConfig(backend="memory", semantic=semantic, shadow_path=str(tmp_path / "shadow.jsonl"))
    embedder = HashingEmbedder()
    engine = SemanticEngine(backend, MicroBatcher(embedder, window_s=0.001))
    recorder = ShadowRecorder(tmp_path / "shadow.jsonl", AnswerAgreement(embedder))
    return CacheStage(config, backend, semantic=engine, shadow=recorder)


async def ask(stage: CacheStage, upstream: Oracle, text: str, rid: str) -> str:
    ctx = context(rid=rid)
    req = request(text)
    outcome = await stage.lookup(ctx, req)
    if isinstance(outcome, CacheHit):
        return outcome.kind
    result = await upstream.chat(req)
    ctx.deployment, ctx.model = "primary", "big"
    await stage.store(outcome, ctx, result, result.usage)
    await stage.flush()
    return "miss"


async def test_a_shadow_route_serves_nothing_semantic_and_records_agreement(tmp_path: Path) -> None:
    stage, upstream = shadow_stage(tmp_path), Oracle()
    assert await ask(stage, upstream, "How do I reset my router password?", "1") == "miss"
    assert await ask(stage, upstream, "How can I reset my router password?", "2") == "miss"  # not served
    assert await ask(stage, upstream, "How can I reset my router password, please?", "3") == "miss"
    assert await ask(stage, upstream, "How do I reset my router name?", "4") == "miss"  # another answer
    assert await ask(stage, upstream, "How do I reset my router password?", "5") == "exact"  # exact still serves
    await stage.close()
    assert upstream.calls == 4 and stage.counters.semantic == 0 and stage.counters.shadow_probes == 3
    records = list(read_records(tmp_path / "shadow.jsonl"))
    assert [r.similarity is None for r in records] == [True, False, False, False]  # the first found nothing
    assert [r.agreed for r in records[1:]] == [True, True, False]
    assert all(r.route == "chat" and r.similarity and r.similarity >= 0.3 for r in records[1:])


async def test_the_queue_is_bounded_and_drops_rather_than_waits(tmp_path: Path) -> None:
    class Slow:
        name, binary = "slow", True

        async def grade(self, sample: Sample) -> Grade:
            await asyncio.sleep(0.05)
            return Grade.of(True)

    recorder = ShadowRecorder(tmp_path / "s.jsonl", Slow(), max_pending=2)
    probe = ShadowProbe("chat", "k", 0.95, True)
    for _ in range(5):
        recorder.fresh_answer(probe, "a", "a")  # returns at once, whatever the grader's pace
    await recorder.close()
    assert recorder.dropped >= 2 and recorder.recorded == 5 - recorder.dropped
    assert len(list(read_records(tmp_path / "s.jsonl"))) == recorder.recorded


async def test_answer_agreement_short_and_long() -> None:
    grader = AnswerAgreement(HashingEmbedder())
    same = await grader.grade(Sample(messages=(), answer="Paris.", references=("paris",)))
    different = await grader.grade(Sample(messages=(), answer="Lyon.", references=("Paris.",)))
    long_text = "Hold the reset button for ten seconds, then wait for the lights to blink. " * 5
    long_same = await grader.grade(Sample(messages=(), answer=long_text, references=(long_text + " Done.",)))
    assert same.passed and not different.passed and long_same.passed
    assert answer_text({"choices": [{"message": {"content": "a"}}, {"text": "b"}]}) == "a\nb"


def write_record(path: Path, rows: list[ShadowRecord]) -> None:
    path.write_bytes(b"".join(r.to_json() + b"\n" for r in rows))


def test_calibrate_from_shadow_and_the_report(tmp_path: Path) -> None:
    record = tmp_path / "data" / "shadow.jsonl"
    record.parent.mkdir()
    right = [ShadowRecord("chat", 0.0, 0.999 - i * 1e-4, True, True) for i in range(400)]
    wrong = [ShadowRecord("chat", 0.0, 0.90 - i * 1e-3, True, False) for i in range(30)]
    empty = [ShadowRecord("chat", 0.0, None) for _ in range(70)]
    few = [ShadowRecord("code", 0.0, 0.99, True, True) for _ in range(10)]
    write_record(record, right + wrong + empty + few)
    config = tmp_path / "margin.yaml"
    config.write_text(
        f"data_dir: {tmp_path / 'data'}\ncache:\n  shadow_path: {record}\n  routes:\n"
        "    chat:\n      semantic: {enabled: true, mode: shadow, threshold: 0.95}\n"
    )
    routes = by_route(read_records(record))
    assert routes["chat"].lookups == 500 and len(routes["chat"].graded) == 430
    runner = CliRunner()
    args = ["calibrate", "--from-shadow", "--config", str(config), "--json"]
    chat = runner.invoke(cache, [*args, "--route", "chat"])
    assert chat.exit_code == 0, chat.output
    guarded = orjson.loads(chat.output)["chat"]["guarded"]
    assert guarded["recommended"] and guarded["wrong"] == 0 and guarded["threshold"] > 0.9
    both = runner.invoke(cache, args)
    assert both.exit_code == 1 and orjson.loads(both.output)["code"]["guarded"]["more_pairs_needed"] > 0
    report = runner.invoke(cache, ["shadow-report", "--config", str(config), "--json"])
    rows = {r["route"]: r for r in orjson.loads(report.output)}
    assert rows["chat"]["would_hit"] == 400 and rows["chat"]["hit_rate"] == 0.8 and rows["chat"]["precision"] == 1.0
    assert runner.invoke(cache, ["calibrate", "--config", str(config)]).exit_code == 2  # neither source given


def test_calibrate_from_shadow_without_a_record(tmp_path: Path) -> None:
    config = tmp_path / "margin.yaml"
    config.write_text(f"data_dir: {tmp_path}\n")
    result = CliRunner().invoke(cache, ["calibrate", "--from-shadow", "--config", str(config)])
    assert result.exit_code == 1 and "no shadow record" in result.output


@pytest.mark.parametrize("mode", ["serve", "shadow"])
def test_from_config_builds_a_recorder_only_for_shadow_routes(tmp_path: Path, mode: str) -> None:
    config = CacheConfig(backend="memory", semantic=SemanticCacheConfig(enabled=True, mode=mode))
    stage = CacheStage.from_config(config, data_dir=tmp_path, embedder=HashingEmbedder())
    assert (stage.shadow is not None) == (mode == "shadow")
