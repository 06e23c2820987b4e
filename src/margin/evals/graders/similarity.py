"""Embedding similarity: the answer means about the same as a reference, by cosine similarity of
margin's sentence embeddings (margin.embedding)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import Field

from margin.embedding import Embedder, EmbedderUnavailableError, HashingEmbedder, MiniLMEmbedder, minilm_available
from margin.evals.errors import ExtraMissing
from margin.evals.graders.options import GraderOptions, parse_options, reference_texts
from margin.evals.graders.protocol import Grade, GraderEnv, Sample

EmbedderName = Literal["minilm", "hashing"]


class SimilarityOptions(GraderOptions):
    threshold: float = Field(0.8, ge=-1, le=1, description="Cosine similarity at which the answer passes")
    embedder: EmbedderName = Field("minilm", description="minilm (meaning; `embed` extra) or hashing (wording)")
    continuous: bool = Field(False, description="Score is the similarity itself (clipped to 0..1), not pass/fail")


def default_embedder(name: str) -> Embedder:
    """margin's embedders by name. `minilm` needs the `embed` extra; `hashing` is numpy only."""
    if name == "hashing":
        return HashingEmbedder()
    if not minilm_available():
        raise ExtraMissing("the embedding grader with embedder minilm", "embed", "onnxruntime/tokenizers")
    return MiniLMEmbedder()


@dataclass(frozen=True, slots=True)
class SimilarityGrader:
    options: SimilarityOptions
    env: GraderEnv
    name: str = "embedding"
    requires_reference: bool = True

    @property
    def binary(self) -> bool:
        return not self.options.continuous

    async def grade(self, sample: Sample) -> Grade:
        refs = reference_texts(sample.references)
        if not refs:
            return Grade.undecided("the item has no reference text")
        try:
            embedder = self.env.embedder(self.options.embedder)
            # The embedder is CPU-bound (an ONNX forward pass): off the event loop.
            vectors = await asyncio.to_thread(embedder.embed, [sample.answer, *refs])
        except EmbedderUnavailableError as exc:
            return Grade.undecided(f"embedder unavailable: {exc}")
        best = float(np.max(vectors[1:] @ vectors[0]))
        passed = best >= self.options.threshold
        score = min(1.0, max(0.0, best)) if self.options.continuous else (1.0 if passed else 0.0)
        return Grade(score=score, passed=passed, detail=f"similarity {best:.3f}")


def embedding(options: Mapping[str, Any], env: GraderEnv) -> SimilarityGrader:
    return SimilarityGrader(parse_options(SimilarityOptions, options, "embedding"), env)
