"""Prompt -> feature matrix for the learned scorers: a sentence embedding plus lexical features.

A FeatureSpec is plain data (it round-trips through JSON inside a model file) and a Featurizer can
export the arrays its embedder needs (the static token table), so a saved scorer rebuilds exactly
the featurizer it was trained with.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from margin.embedding import Embedder, HashingEmbedder, MiniLMEmbedder, StaticMiniLMEmbedder
from margin.routing.learned.lexical import LEXICAL_VERSION, feature_names, lexical_features

EmbedderKind = Literal["static", "minilm", "hashing", "none"]
EMBEDDER_KINDS: tuple[EmbedderKind, ...] = ("static", "minilm", "hashing", "none")
STATIC_TABLE = "static_table"
# 89% of the RouteLLM prompts are shorter (all of GSM8K; the longer ones are MMLU passages, whose
# question comes last). 2,048 (99%) kept the decision p99 at 2.9 ms on one core, 1,024 at 1.9 ms,
# with the same held-out APGR (MMLU 0.679 -> 0.681, GSM8K 0.670 -> 0.671: inside the folds' spread).
DEFAULT_MAX_CHARS = 1024


@dataclass(frozen=True)
class FeatureSpec:
    """Which features a scorer reads.

    `static` (default) is MiniLM distilled to token vectors: ~0.1 ms per prompt, within 0.01 APGR of
    the contextual `minilm` (7-30 ms) on the RouteLLM data. Long prompts keep their *tail* by default:
    few-shot prefixes and pasted context come first, the question that predicts difficulty last.
    `lexical_version` names the lexical column set (see margin.routing.learned.lexical); specs read
    from model files that predate it get version 1, the set those files were trained on.
    `max_chars` cuts every prompt to its last (or first, with keep="head") characters before any
    feature is computed: featurizing is linear in the text, and a 3,000-character prompt took 2.6 ms
    against a 2 ms budget (a 100,000-character one would take 80). Specs from model files that
    predate it read as None: no cut, as they were trained; files saved with 2,048 (the default before
    1,024) keep reading 2,048.
    """

    embedder: EmbedderKind = "static"
    lexical: bool = True
    max_tokens: int = 512
    keep: Literal["head", "tail"] = "tail"
    hashing_dim: int = 512
    lexical_version: int = LEXICAL_VERSION
    max_chars: int | None = DEFAULT_MAX_CHARS

    def __post_init__(self) -> None:
        if self.max_chars is not None and self.max_chars < 1:
            raise ValueError("max_chars must be at least 1 (or None for no cut)")
        if self.embedder not in EMBEDDER_KINDS:
            raise ValueError(f"embedder must be one of {EMBEDDER_KINDS}, not {self.embedder!r}")
        feature_names(self.lexical_version)  # raises on a version this code cannot compute
        if self.embedder == "none" and not self.lexical:
            raise ValueError("a scorer needs at least one kind of feature")

    def clip(self, text: str) -> str:
        """The part of a prompt the features read (see max_chars)."""
        if self.max_chars is None or len(text) <= self.max_chars:
            return text
        return text[-self.max_chars :] if self.keep == "tail" else text[: self.max_chars]

    def build_embedder(self, static_table: NDArray[np.floating] | None = None) -> Embedder | None:
        """The embedder this spec names; `static` distils its table (~40 s) unless one is given."""
        if self.embedder == "static":
            table = static_table if static_table is not None else StaticMiniLMEmbedder.distil().table
            return StaticMiniLMEmbedder(table, max_tokens=self.max_tokens, keep=self.keep)
        if self.embedder == "minilm":
            return MiniLMEmbedder(max_tokens=min(self.max_tokens, 256), keep=self.keep)
        if self.embedder == "hashing":
            return HashingEmbedder(dim=self.hashing_dim)
        return None

    @property
    def embedder_name(self) -> str | None:
        """The vector-space name (`Embedder.name`) this spec's embedder has, without building it."""
        names = {
            "static": "static-minilm-l6-v2-int8",
            "minilm": "all-MiniLM-L6-v2-onnx-int8",
            "hashing": HashingEmbedder(dim=self.hashing_dim).name,
        }
        return names.get(self.embedder)

    def to_json(self) -> dict[str, Any]:
        return {
            "embedder": self.embedder,
            "lexical": self.lexical,
            "max_tokens": self.max_tokens,
            "keep": self.keep,
            "hashing_dim": self.hashing_dim,
            "lexical_version": self.lexical_version,
            "max_chars": self.max_chars,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FeatureSpec:
        return cls(
            embedder=data["embedder"],
            lexical=bool(data["lexical"]),
            max_tokens=int(data["max_tokens"]),
            keep=data["keep"],
            hashing_dim=int(data["hashing_dim"]),
            lexical_version=int(data.get("lexical_version", 1)),
            max_chars=None if data.get("max_chars") is None else int(data["max_chars"]),
        )


class Featurizer:
    """Turns prompts into one float64 row each: [embedding | lexical]. Thread-safe if the embedder is."""

    def __init__(self, spec: FeatureSpec, embedder: Embedder | None = None) -> None:
        self.spec = spec
        self.embedder = embedder if embedder is not None else spec.build_embedder()
        if (self.embedder is None) != (spec.embedder == "none"):
            raise ValueError("an embedder must be given exactly when the spec uses one")

    @property
    def embedding_dim(self) -> int:
        return self.embedder.dim if self.embedder is not None else 0

    @property
    def lexical_dim(self) -> int:
        return len(feature_names(self.spec.lexical_version)) if self.spec.lexical else 0

    @property
    def dim(self) -> int:
        return self.embedding_dim + self.lexical_dim

    def transform(self, prompts: Sequence[str]) -> NDArray[np.float64]:
        texts = [self.spec.clip(prompt) for prompt in prompts]
        blocks: list[NDArray[np.float64]] = []
        if self.embedder is not None:
            blocks.append(self.embedder.embed(texts).astype(np.float64))
        if self.spec.lexical:
            blocks.append(lexical_features(texts, self.spec.lexical_version))
        return np.hstack(blocks) if len(blocks) > 1 else blocks[0]

    def arrays(self) -> dict[str, NDArray[Any]]:
        """Arrays a model file must carry to rebuild this featurizer."""
        if isinstance(self.embedder, StaticMiniLMEmbedder):
            return {STATIC_TABLE: self.embedder.table}
        return {}

    @classmethod
    def from_arrays(
        cls, spec: FeatureSpec, arrays: Mapping[str, NDArray[Any]], embedder: Embedder | None = None
    ) -> Featurizer:
        if embedder is None and spec.embedder == "static":
            if STATIC_TABLE not in arrays:
                raise ValueError("a static-embedding scorer needs its token table")
            embedder = spec.build_embedder(arrays[STATIC_TABLE])
        return cls(spec, embedder)
