"""The embedding-similarity grader, and third-party graders from the `margin.graders` entry points."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib.metadata import EntryPoint
from typing import Any

import numpy as np
import pytest
from evals_support import sample

from margin.embedding import HashingEmbedder, Matrix
from margin.evals.errors import GraderSpecError
from margin.evals.graders import registry
from margin.evals.graders.protocol import Grade, GraderEnv, Sample
from margin.evals.graders.registry import build_grader


class Axis:
    """A 2-d embedder: "yes"-ish texts on one axis, everything else on the other."""

    name = "axis"
    dim = 2

    def embed(self, texts: Sequence[str]) -> Matrix:
        rows = [[1.0, 0.0] if "yes" in t.lower() else [0.0, 1.0] for t in texts]
        return np.asarray(rows, dtype=np.float32)


async def test_similarity_passes_at_the_threshold_with_the_named_embedder() -> None:
    names: list[str] = []

    def factory(name: str) -> Axis:
        names.append(name)
        return Axis()

    env = GraderEnv(embedder_factory=factory)
    grader = build_grader({"type": "embedding", "threshold": 0.9}, env)
    assert (await grader.grade(sample("Yes, indeed", "yes"))).passed
    assert not (await grader.grade(sample("No", "yes"))).passed
    assert names == ["minilm"]  # built once, then shared


async def test_similarity_with_the_hashing_embedder_and_continuous_scores() -> None:
    env = GraderEnv(embedder_factory=lambda name: HashingEmbedder())
    grader = build_grader({"type": "embedding", "embedder": "hashing", "continuous": True, "threshold": 0.5}, env)
    assert not grader.binary
    same = await grader.grade(sample("The cat sat on the mat.", "the cat sat on the mat"))
    other = await grader.grade(sample("Quarterly revenue grew by nine percent.", "the cat sat on the mat"))
    assert same.passed and same.score is not None and same.score > 0.9
    assert other.score is not None and other.score < same.score


class LengthGrader:
    name = "max_length"
    binary = True

    def __init__(self, limit: int) -> None:
        self.limit = limit

    async def grade(self, sample: Sample) -> Grade:
        return Grade.of(len(sample.answer) <= self.limit)


def length_factory(options: Mapping[str, Any], env: GraderEnv) -> LengthGrader:
    limit = options.get("limit")
    if not isinstance(limit, int):
        raise ValueError("limit must be an integer")
    return LengthGrader(limit)


def not_a_grader(options: Mapping[str, Any], env: GraderEnv) -> object:
    return object()


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    points = [
        EntryPoint("max_length", f"{__name__}:length_factory", registry.ENTRY_POINT_GROUP),
        EntryPoint("broken", f"{__name__}:not_a_grader", registry.ENTRY_POINT_GROUP),
        EntryPoint("missing", "no_such_module_anywhere:factory", registry.ENTRY_POINT_GROUP),
    ]
    monkeypatch.setattr(registry, "entry_points", lambda group: [p for p in points if p.group == group])


@pytest.mark.usefixtures("plugins")
async def test_a_plugin_grader_is_built_from_its_entry_point() -> None:
    grader = build_grader({"type": "max_length", "limit": 5}, GraderEnv())
    assert (await grader.grade(sample("short"))).passed
    assert not (await grader.grade(sample("far too long"))).passed


@pytest.mark.usefixtures("plugins")
@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"type": "max_length", "limit": "x"}, "max_length: limit must be an integer"),
        ("broken", "which is not a Grader"),
        ("missing", "cannot be loaded"),
        ("nope", "known: choice, contains"),
    ],
)
def test_plugin_failures_are_spec_errors(spec: object, words: str) -> None:
    with pytest.raises(GraderSpecError, match=words):
        build_grader(spec, GraderEnv())  # type: ignore[arg-type]
