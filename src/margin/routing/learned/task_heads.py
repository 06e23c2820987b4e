"""The default scorer: shared features, a word score, and one logistic head per task.

    prompt -> [embedding | lexical]  (Featurizer)
           -> word score             (ridge over [bag of words | embedding], see stacking.py)
           -> task                   (TaskGate: which benchmark of the training data it looks like)
           -> p = head[task]([embedding | lexical | word score])

What predicts the strong tier's gain differs by task: on MMLU the subject, on GSM8K the number of
quantities to combine. One head over a mixed file lets the largest task set every weight (GSM8K
APGR 0.622 mixed against 0.658 with its own head, same features and folds). Tasks with too few
rows of their own (MT-Bench: 61) share a head fitted on every row.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from margin.embedding import Embedder
from margin.routing.learned.features import FeatureSpec, Featurizer
from margin.routing.learned.gate import TaskGate
from margin.routing.learned.heads import LinearHead
from margin.routing.learned.stacking import WordScorer

Matrix = NDArray[np.float64]
Vector = NDArray[np.float64]
KIND = "task-heads"
FORMAT_VERSION = 1


@dataclass
class TaskHeadScorer:
    """Thread-safe: every part is read-only after construction (the featurizer's embedder is)."""

    featurizer: Featurizer
    words: WordScorer
    heads: tuple[LinearHead, ...]
    gate: TaskGate | None = None  # None: one head for every prompt
    head_of_task: tuple[int, ...] = (0,)  # for each gate task, the index of its head
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        tasks = 1 if self.gate is None else len(self.gate.tasks)
        if len(self.head_of_task) != tasks or not all(0 <= h < len(self.heads) for h in self.head_of_task):
            raise ValueError("head_of_task must name a head for every task of the gate")

    @property
    def name(self) -> str:
        spec = self.featurizer.spec
        parts: list[str] = [spec.embedder] if spec.embedder != "none" else []
        parts += ["lexical"] * spec.lexical + ["words"]
        return f"task-heads[{'+'.join(parts)}; {len(self.heads)} head{'s' * (len(self.heads) > 1)}]"

    def score(self, prompts: Sequence[str]) -> Vector:
        if not prompts:
            return np.zeros(0)
        return self.score_features(self.featurizer.transform(prompts), prompts)

    def score_features(self, features: Matrix, prompts: Sequence[str]) -> Vector:
        """Scores from precomputed featurizer rows (`features[i]` is `prompts[i]`'s row)."""
        embedding = features[:, : self.featurizer.embedding_dim]
        texts = [self.featurizer.spec.clip(prompt) for prompt in prompts]
        full = np.hstack([features, self.words.score(texts, embedding)[:, None]])
        if self.gate is None:
            return self.heads[0].predict(full)
        head_index = np.asarray(self.head_of_task)[self.gate.predict(features)]
        scores = np.zeros(len(prompts))
        for head in np.unique(head_index):
            rows = head_index == head
            scores[rows] = self.heads[int(head)].predict(full[rows])
        return scores

    def save(self, path: Path | str) -> None:
        meta = {
            "kind": KIND,
            "format_version": FORMAT_VERSION,
            "features": self.featurizer.spec.to_json(),
            "tasks": list(self.gate.tasks) if self.gate is not None else [],
            "head_of_task": list(self.head_of_task),
            "metadata": self.metadata,
        }
        arrays: dict[str, Any] = {"meta": np.array(json.dumps(meta)), **self.featurizer.arrays(), **self.words.arrays()}
        for index, head in enumerate(self.heads):
            arrays.update(head.arrays(f"head{index}_"))
        if self.gate is not None:
            arrays.update(self.gate.arrays())
        with Path(path).open("wb") as handle:  # an open handle stops numpy appending ".npz"
            np.savez(handle, **arrays)

    @classmethod
    def from_arrays(
        cls, meta: Mapping[str, Any], arrays: Mapping[str, NDArray[Any]], embedder: Embedder | None
    ) -> TaskHeadScorer:
        """Rebuild a saved scorer; KeyError or ValueError when the arrays do not fit together."""
        spec = FeatureSpec.from_json(meta["features"])
        featurizer = Featurizer.from_arrays(spec, arrays, embedder)
        head_of_task = tuple(int(h) for h in meta["head_of_task"])
        heads = tuple(LinearHead.from_arrays(arrays, f"head{i}_") for i in range(max(head_of_task) + 1))
        if any(head.weights.size != featurizer.dim + 1 for head in heads):
            raise ValueError(f"a head does not expect {featurizer.dim} features plus the word score")
        tasks: Sequence[str] = meta["tasks"]
        gate = TaskGate.from_arrays(tasks, arrays) if tasks else None
        return cls(
            featurizer=featurizer,
            words=WordScorer.from_arrays(arrays),
            heads=heads,
            gate=gate,
            head_of_task=head_of_task,
            metadata=dict(meta.get("metadata", {})),
        )
