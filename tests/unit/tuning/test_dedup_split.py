"""Deduplication and the stable split: exact and near duplicates dropped, related prompts kept in
one split, the same prompts always in the same splits, redaction applied, tiny sets refused."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest

from margin.config.tuning import TuningConfig
from margin.tuning.build import BuildRequest, Candidate, build_dataset
from margin.tuning.dataset import SPLITS, dataset_dir, example_id, load_split, read_manifest
from margin.tuning.dedup import assign_splits, deduplicate
from margin.tuning.errors import DatasetError

_WORDS = [
    *("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"),
    *("india", "juliet", "kilo", "lima", "mike", "november", "oscar", "papa"),
]


def _prompt(rng: random.Random, n: int = 12) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(n)) + f" {rng.randrange(1000)}"


def _ex(text: str) -> dict[str, Any]:
    messages = [{"role": "user", "content": text}]
    return {"messages": messages, "id": example_id(messages)}


def test_exact_and_near_duplicates_are_dropped() -> None:
    base = "Please route this ticket: my invoice for March was charged twice to the same card"
    examples = [_ex(base), _ex(base), _ex(base + "."), _ex("Completely unrelated: what is the capital of Peru?")]
    out = deduplicate(examples, near_duplicate=0.95, same_split=0.8)
    assert out.dropped == {"exact": 1, "near": 1}
    assert [e["messages"][0]["content"] for e in out.kept] == [
        base,
        "Completely unrelated: what is the capital of Peru?",
    ]


def test_related_prompts_share_a_split_and_splits_are_stable() -> None:
    rng = random.Random(7)
    prompts = [_prompt(rng) for _ in range(300)]
    related = "Summarise the refund policy for order number {} placed last week by the customer"
    prompts += [related.format(n) for n in range(40)]  # near each other, not near-duplicates at 0.99
    examples = [_ex(p) for p in prompts]
    out = deduplicate(examples, near_duplicate=0.99, same_split=0.8)
    splits = assign_splits(out, validation=0.1, test=0.1, salt="s")
    where = {e["messages"][0]["content"]: s for s in SPLITS for e in splits[s]}
    assert len({where[related.format(n)] for n in range(40) if related.format(n) in where}) == 1
    assert all(splits[s] for s in SPLITS)
    shuffled = examples[:]
    random.Random(1).shuffle(shuffled)
    again = assign_splits(
        deduplicate(shuffled, near_duplicate=0.99, same_split=0.8), validation=0.1, test=0.1, salt="s"
    )
    assert {e["id"]: s for s in SPLITS for e in again[s]} == {e["id"]: s for s in SPLITS for e in splits[s]}


def _answered(n: int, rng: random.Random) -> list[Candidate]:
    return [Candidate([{"role": "user", "content": _prompt(rng)}], f"answer {i}") for i in range(n)]


def test_build_redacts_and_writes_every_split(tmp_path: Path) -> None:
    rng = random.Random(3)
    candidates = _answered(60, rng)
    candidates.append(Candidate([{"role": "user", "content": "mail me at jane.doe@example.com " + _prompt(rng)}], "ok"))
    request = BuildRequest("mine", "jsonl", "support")
    manifest = asyncio.run(build_dataset(tmp_path, request, candidates, None, TuningConfig()))
    assert manifest.total == 61 and manifest.settings["redactions"] == {"EMAIL": 1}
    where = dataset_dir(tmp_path, "mine")
    texts = [e["messages"][0]["content"] for s in SPLITS for e in load_split(where, s)]
    assert any("[EMAIL]" in t for t in texts) and not any("jane.doe" in t for t in texts)
    assert read_manifest(where).counts == manifest.counts


def test_tiny_and_empty_datasets_are_refused_and_nothing_written(tmp_path: Path) -> None:
    rng = random.Random(5)
    settings = TuningConfig(min_examples=20)
    with pytest.raises(DatasetError, match=r"5 examples after deduplication, fewer than tuning.min_examples \(20\)"):
        asyncio.run(build_dataset(tmp_path, BuildRequest("tiny", "jsonl", None), _answered(5, rng), None, settings))
    with pytest.raises(DatasetError, match="would be empty"):
        asyncio.run(build_dataset(tmp_path, BuildRequest("none", "jsonl", None), [], None, settings))
    unanswered = [Candidate([{"role": "user", "content": _prompt(rng)}]) for _ in range(30)]
    with pytest.raises(DatasetError, match="no teacher was named"):
        asyncio.run(build_dataset(tmp_path, BuildRequest("q", "prompts", None), unanswered, None, settings))
    assert not (tmp_path / "tuning" / "datasets").exists() or not any((tmp_path / "tuning" / "datasets").iterdir())


def test_a_prompt_file_gets_the_groups_names_and_addresses_redaction(tmp_path: Path) -> None:
    """A group whose production sample redacts names and addresses (Presidio, the `pii` extra) has
    them redacted from a prompt file's texts and answers too, after the patterns."""
    from margin.cli.tune_dataset import _names_and_addresses
    from margin.config.loader import parse_config

    config = parse_config(
        "deployments: [{name: d, provider: fake, model: m}]\n"
        "models: [{name: support, deployments: [d], sample: {share: 1.0, redact: {names_and_addresses: presidio}}}]\n"
    )
    more = _names_and_addresses(config, "support")
    assert more is not None
    nouns = ["invoice", "parcel", "router", "battery", "voucher", "contract", "screen", "modem", "cable", "receipt"]
    candidates = [
        Candidate([{"role": "user", "content": f"is the {a} cheaper than the {b} this month?"}], "yes it is")
        for a in nouns
        for b in nouns
        if a != b
    ][:30]
    candidates.append(
        Candidate([{"role": "user", "content": "Please ship it to Margaret Thatcher at 221B Baker Street today."}],
                  "Shipping to Margaret Thatcher, mail jane@example.com")
    )  # fmt: skip
    request = BuildRequest("names", "prompts", "support", more_redaction=more)
    manifest = asyncio.run(build_dataset(tmp_path, request, candidates, None, TuningConfig()))
    texts = " ".join(m["content"] for s in SPLITS for e in load_split(dataset_dir(tmp_path, "names"), s)
                     for m in e["messages"])  # fmt: skip
    assert "Thatcher" not in texts and "Baker Street" not in texts and "jane@" not in texts
    assert manifest.settings["redactions"]["NAME"] == 2 and manifest.settings["redactions"]["ADDRESS"] == 1
