"""Scorer plug-ins: prompt -> P(the cheap tier's answer falls short of the strong tier's).

The probability counts ties as half ("falls short" in the Bradley-Terry sense), so 0.5 means no
expected difference and ranking by it is ranking by expected quality gain of the strong tier, which
is exactly what a cost-quality curve rewards.

Two kinds: a task-head scorer (task_heads.py, what training produces) and a linear scorer, one
logistic head over [embedding | standardised lexical] features (model files saved before task heads).
Each is saved as a single .npz: arrays for the heads, plus a JSON string with the kind, the feature
spec and training metadata (calibration table included), loaded with allow_pickle=False.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from margin.embedding import Embedder
from margin.routing.learned.features import FeatureSpec, Featurizer
from margin.routing.learned.heads import LinearHead
from margin.routing.learned.task_heads import FORMAT_VERSION as TASK_HEADS_VERSION
from margin.routing.learned.task_heads import KIND as TASK_HEADS_KIND
from margin.routing.learned.task_heads import TaskHeadScorer

Vector = NDArray[np.float64]
FORMAT_VERSION = 1


@runtime_checkable
class Scorer(Protocol):
    """What the request path calls. Implementations must be safe to call from several threads."""

    @property
    def name(self) -> str: ...

    def score(self, prompts: Sequence[str]) -> Vector:
        """One probability in [0, 1] per prompt that the cheap tier falls short."""
        ...


class ModelFileError(ValueError):
    """A router model file is missing, of an unknown kind, or from an incompatible version."""


@dataclass
class LinearScorer:
    """One logistic head over prompt features: what `margin router train` saved before task heads.

    Still loaded and served; training now produces a TaskHeadScorer (task_heads.py).
    """

    featurizer: Featurizer
    head: LinearHead
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        embedder = self.featurizer.spec.embedder
        return f"linear[{embedder}{'+lexical' if self.featurizer.spec.lexical else ''}]"

    def score(self, prompts: Sequence[str]) -> Vector:
        if not prompts:
            return np.zeros(0)
        return self.head.predict(self.featurizer.transform(prompts))

    def score_features(self, features: NDArray[np.float64], prompts: Sequence[str]) -> Vector:
        """Scores from precomputed featurizer rows (the prompts are not needed by this scorer)."""
        return self.head.predict(features)

    def save(self, path: Path | str) -> None:
        meta = {
            "kind": "linear",
            "format_version": FORMAT_VERSION,
            "features": self.featurizer.spec.to_json(),
            "metadata": self.metadata,
        }
        # dict[str, Any]: numpy's stubs would otherwise read the arrays as its own keyword arguments.
        arrays: dict[str, Any] = {
            "meta": np.array(json.dumps(meta)),
            "mean": self.head.mean,
            "scale": self.head.scale,
            "weights": self.head.weights,
            "bias": np.array(self.head.bias),
            **self.featurizer.arrays(),
        }
        with Path(path).open("wb") as handle:  # an open handle stops numpy appending ".npz"
            np.savez(handle, **arrays)

    @classmethod
    def from_arrays(
        cls, meta: Mapping[str, Any], arrays: Mapping[str, NDArray[Any]], embedder: Embedder | None
    ) -> LinearScorer:
        spec = FeatureSpec.from_json(meta["features"])
        head = LinearHead(
            mean=arrays["mean"], scale=arrays["scale"], weights=arrays["weights"], bias=float(arrays["bias"])
        )
        featurizer = Featurizer.from_arrays(spec, arrays, embedder)
        if featurizer.dim != head.weights.size:
            raise ModelFileError(f"model expects {head.weights.size} features, featurizer gives {featurizer.dim}")
        return cls(featurizer=featurizer, head=head, metadata=dict(meta.get("metadata", {})))


def load_scorer(path: Path | str, *, embedder: Embedder | None = None) -> LinearScorer | TaskHeadScorer:
    """Load a scorer saved by `save`. Pass `embedder` to share one instance (e.g. with the cache);
    it must be the same vector space (`name`) the scorer was trained on."""
    try:
        with np.load(Path(path), allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError) as error:
        raise ModelFileError(f"cannot read router model {path}: {error}") from error
    if "meta" not in arrays:
        raise ModelFileError(f"{path} is not a margin router model (no metadata)")
    meta = json.loads(str(arrays.pop("meta")))
    kind, version = meta.get("kind"), meta.get("format_version")
    known = {("linear", FORMAT_VERSION), (TASK_HEADS_KIND, TASK_HEADS_VERSION)}
    if (kind, version) not in known:
        raise ModelFileError(f"{path}: unsupported model kind/version {kind}/{version}")
    spec = FeatureSpec.from_json(meta["features"])
    if embedder is not None and spec.embedder_name != embedder.name:
        raise ModelFileError(f"{path} was trained on {spec.embedder_name} vectors, not {embedder.name}")
    try:
        if kind == TASK_HEADS_KIND:
            return TaskHeadScorer.from_arrays(meta, arrays, embedder)
        return LinearScorer.from_arrays(meta, arrays, embedder)
    except (KeyError, ValueError) as error:
        raise ModelFileError(f"{path} is incomplete or inconsistent: {error}") from error
