"""Shadow mode on a route with the learned decision: the record keeps each would-be hit's probability,
`shadow-report` and `calibrate --from-shadow` speak in `min_probability`; the record is read
incrementally for the dashboard; and the explicit step from shadow to serving."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
from click.testing import CliRunner
from test_cache_support import context, request

from margin.caching.backends.memory import MemoryCacheBackend
from margin.caching.semantic.batcher import MicroBatcher
from margin.caching.semantic.engine import SemanticEngine
from margin.caching.semantic.learned import FEATURES, LearnedDecision
from margin.caching.semantic.shadow import AnswerAgreement, ShadowRecord, ShadowRecorder, read_records
from margin.caching.semantic.shadow_report import ShadowTally
from margin.cli.cache import cache
from margin.config.model import CacheConfig, SemanticCacheConfig
from margin.embedding import HashingEmbedder
from margin.pipeline.cache import CacheHit, CacheStage
from margin.types import ChatRequest, ChatResult, Usage

PARAPHRASES = ("How do I reset my router password?", "How can I reset my router password?")


@dataclass
class Oracle:
    """An upstream whose answer depends on the topic, so paraphrases get the same answer."""

    calls: int = 0

    async def chat(self, req: ChatRequest) -> ChatResult:
        self.calls += 1
        question = str(req.messages[-1]["content"])
        text = "Hold the reset button for ten seconds." if "password" in question else f"About: {question}"
        body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}
        return ChatResult(body=body, usage=Usage(input_uncached=5, output=5), model="big")


async def ask(stage: CacheStage, upstream: Oracle, text: str, rid: str) -> str:
    ctx, req = context(rid=rid), request(text)
    outcome = await stage.lookup(ctx, req)
    if isinstance(outcome, CacheHit):
        return outcome.kind
    result = await upstream.chat(req)
    ctx.deployment, ctx.model = "primary", "big"
    await stage.store(outcome, ctx, result, result.usage)
    await stage.flush()
    return "miss"


def write_record(path: Path, rows: list[ShadowRecord]) -> None:
    path.write_bytes(b"".join(r.to_json() + b"\n" for r in rows))


def model_file(tmp_path: Path) -> Path:
    """A learned decision that reads the cosine and the token overlap (floor 0.1: hashing vectors)."""
    weights = np.zeros(len(FEATURES))
    weights[FEATURES.index("cosine")], weights[FEATURES.index("token_jaccard")] = 4.0, 3.0
    model = LearnedDecision(weights, -4.0, np.zeros(len(FEATURES)), np.ones(len(FEATURES)), floor=0.1)
    path = tmp_path / "learned.json"
    path.write_bytes(model.to_json())
    return path


def stage(tmp_path: Path, backend: MemoryCacheBackend, *, mode: str, min_probability: float = 0.5) -> CacheStage:
    semantic = SemanticCacheConfig(
        enabled=True, mode=mode, decision="learned", learned_model=model_file(tmp_path), min_probability=min_probability
    )
    config = CacheConfig(backend="memory", semantic=semantic, shadow_path=str(tmp_path / "shadow.jsonl"))
    embedder = HashingEmbedder()
    engine = SemanticEngine(backend, MicroBatcher(embedder, window_s=0.001))
    recorder = ShadowRecorder(tmp_path / "shadow.jsonl", AnswerAgreement(embedder)) if mode == "shadow" else None
    return CacheStage(config, backend, semantic=engine, shadow=recorder)


async def test_a_learned_shadow_route_records_the_probability_the_serving_route_decides_on(tmp_path: Path) -> None:
    backend, upstream = MemoryCacheBackend(), Oracle()
    shadow = stage(tmp_path, backend, mode="shadow")
    assert await ask(shadow, upstream, PARAPHRASES[0], "1") == "miss"
    assert await ask(shadow, upstream, PARAPHRASES[1], "2") == "miss"  # a would-be hit, not served
    await shadow.close()
    records = list(read_records(tmp_path / "shadow.jsonl"))
    assert records[0].similarity is None and records[1].agreed is True
    probability = records[1].probability
    assert probability is not None and 0.0 < probability < 1.0
    # the recorded probability is the serving decision's own: it serves at that min_probability, not above
    for at, served in ((probability, "semantic"), (min(0.999, probability + 1e-6), "miss")):
        serving = stage(tmp_path, MemoryCacheBackend(), mode="serve", min_probability=at)
        assert [await ask(serving, Oracle(), q, f"{at}-{q}") for q in PARAPHRASES] == ["miss", served]
        await serving.close()


async def test_turning_a_route_from_shadow_to_serving_is_the_mode_setting(tmp_path: Path) -> None:
    """docs/caching.md, shadow mode step 4: the same cache, the mode changed to serve, serves the hit."""
    backend, upstream = MemoryCacheBackend(), Oracle()
    shadow = stage(tmp_path, backend, mode="shadow", min_probability=0.01)
    assert [await ask(shadow, upstream, q, str(i)) for i, q in enumerate(PARAPHRASES)] == ["miss", "miss"]
    await stop_without_closing_the_cache(shadow)
    serving = stage(tmp_path, backend, mode="serve", min_probability=0.01)
    assert await ask(serving, upstream, "How can I reset my router password, please?", "3") == "semantic"
    await serving.close()
    assert upstream.calls == 2 and serving.counters.semantic == 1 and shadow.counters.semantic == 0


async def stop_without_closing_the_cache(stage: CacheStage) -> None:
    """A gateway restarted with a new config: the cache (here in memory) outlives the stage."""
    await stage.flush()
    if stage.shadow is not None:
        await stage.shadow.close()
    if stage.semantic is not None:
        await stage.semantic.close()


def learned_config(tmp_path: Path, record: Path) -> Path:
    config = tmp_path / "margin.yaml"
    config.write_text(
        f"data_dir: {tmp_path / 'data'}\ncache:\n  shadow_path: {record}\n  routes:\n"
        "    chat:\n      semantic: {enabled: true, mode: shadow, decision: learned, min_probability: 0.9}\n"
        "    code:\n      semantic: {enabled: true, mode: shadow, decision: learned}\n"
        "    faq:\n      semantic: {enabled: true, mode: shadow, threshold: 0.95}\n"
    )
    return config


def test_report_and_calibration_of_a_learned_route_are_in_min_probability(tmp_path: Path) -> None:
    record = tmp_path / "data" / "shadow.jsonl"
    record.parent.mkdir()
    # chat: high probabilities agree, low ones do not; cosine alone cannot tell them apart (all 0.97)
    right = [ShadowRecord("chat", 0.0, 0.97, True, True, 0.999 - i * 1e-4) for i in range(400)]
    wrong = [ShadowRecord("chat", 0.0, 0.97, True, False, 0.85 - i * 1e-3) for i in range(30)]
    empty = [ShadowRecord("chat", 0.0, None) for _ in range(70)]
    few = [ShadowRecord("code", 0.0, 0.99, True, True, 0.99) for _ in range(10)]
    cosine = [ShadowRecord("faq", 0.0, 0.99, True, True) for _ in range(400)]
    write_record(record, right + wrong + empty + few + cosine)
    config = learned_config(tmp_path, record)
    runner = CliRunner()
    report = runner.invoke(cache, ["shadow-report", "--config", str(config), "--json"])
    assert report.exit_code == 0, report.output
    rows = {r["route"]: r for r in orjson.loads(report.output)}
    assert rows["chat"]["decision"] == "learned" and rows["chat"]["min_probability"] == 0.9
    assert rows["chat"]["would_hit"] == 400 and rows["chat"]["hit_rate"] == 0.8 and rows["chat"]["precision"] == 1.0
    assert rows["chat"]["precision_lower_bound"] > 0.99 and rows["chat"]["threshold"] is None
    assert rows["faq"]["decision"] == "cosine" and rows["faq"]["would_hit"] == 400
    text = runner.invoke(cache, ["shadow-report", "--config", str(config)]).output
    assert "p>=0.9" in text and "cos>=0.95" in text
    args = ["calibrate", "--from-shadow", "--config", str(config), "--json"]
    chat = runner.invoke(cache, [*args, "--route", "chat"])
    assert chat.exit_code == 0, chat.output
    learned = orjson.loads(chat.output)["chat"]["learned"]
    assert learned["recommended"] and learned["wrong"] == 0 and 0.85 < learned["min_probability"] < 0.96
    assert learned["precision_lower_bound"] >= 0.99
    every = runner.invoke(cache, args)
    assert every.exit_code == 1  # code: ten graded hits cannot reach 0.99
    body = orjson.loads(every.output)
    assert body["code"]["learned"]["more_pairs_needed"] > 0 and "min_probability" in body["code"]["learned"]["refusal"]
    assert body["faq"]["guarded"]["recommended"]  # a cosine route beside them stays in the threshold
    snippet = runner.invoke(cache, ["calibrate", "--from-shadow", "--config", str(config), "--route", "chat"]).output
    assert "decision: learned" in snippet and "min_probability: 0." in snippet


def test_the_tally_reads_only_what_was_appended(tmp_path: Path) -> None:
    record = tmp_path / "shadow.jsonl"
    tally = ShadowTally(record)
    assert tally.routes() == {}
    write_record(record, [ShadowRecord("chat", 0.0, 0.95, True, True, 0.97), ShadowRecord("chat", 0.0, None)])
    first = tally.routes()["chat"]
    assert first.lookups == 2 and len(first.graded) == 1 and len(first.learned) == 1
    with record.open("ab") as out:
        out.write(ShadowRecord("chat", 1.0, 0.9, False, False).to_json() + b"\n")
        out.write(b'{"route": "chat", "at": 2.0, "simil')  # a line still being written
    second = tally.routes()["chat"]
    assert second.lookups == 3 and len(second.graded) == 2 and len(second.learned) == 1
    with record.open("ab") as out:
        out.write(b'arity": null, "guard_ok": false, "agreed": null}\n')
    assert tally.routes()["chat"].lookups == 4
    write_record(record, [ShadowRecord("code", 0.0, None)])  # replaced by a shorter record: read again
    assert set(tally.routes()) == {"code"}
