"""Bag of words: a vocabulary learned from training prompts and tf-idf rows over it.

Words are lower-case runs of letters and digits; with ngrams=2 each pair of adjacent words is a
term too ("more than", "which of"), which on the RouteLLM data lifted a word ridge from 0.665 to
0.676 APGR on MMLU and from 0.581 to 0.609 on GSM8K. A term enters the vocabulary when at least
`min_prompts` training prompts contain it; weights are sublinear tf (1 + log count) times smoothed
idf, and each row is scaled to unit length, so long and short prompts weigh the same. Unknown terms
are ignored. Turning one prompt into its row is a regex split and a dictionary lookup per term:
tens of microseconds.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np
from numpy.typing import NDArray

from margin.routing.learned.sparse import SparseRows

_WORD = re.compile(r"[a-z0-9]+")


def words_of(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def terms_of(text: str, ngrams: int) -> list[str]:
    """The words of a text and, with ngrams=2, each pair of adjacent words ("more than")."""
    words = words_of(text)
    if ngrams < 2:
        return words
    return words + [f"{first} {second}" for first, second in pairwise(words)]


@dataclass(frozen=True)
class Vocabulary:
    words: tuple[str, ...]  # terms: words, and word pairs when ngrams is 2
    idf: NDArray[np.float64]
    ngrams: int = 1
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.words) != self.idf.size:
            raise ValueError("a vocabulary needs one idf weight per word")
        object.__setattr__(self, "_index", {word: i for i, word in enumerate(self.words)})

    @classmethod
    def fit(cls, prompts: Sequence[str], *, min_prompts: int = 2, ngrams: int = 1) -> Vocabulary:
        """Terms found in at least `min_prompts` prompts, in alphabetical order (deterministic)."""
        counts: Counter[str] = Counter()
        for prompt in prompts:
            counts.update(set(terms_of(prompt, ngrams)))
        words = tuple(sorted(word for word, count in counts.items() if count >= min_prompts))
        document_counts = np.array([counts[word] for word in words], dtype=np.float64)
        idf = np.log((1.0 + len(prompts)) / (1.0 + document_counts)) + 1.0
        return cls(words=words, idf=idf, ngrams=ngrams)

    @property
    def size(self) -> int:
        return len(self.words)

    def transform(self, prompts: Sequence[str]) -> SparseRows:
        data: list[float] = []
        indices: list[int] = []
        indptr = [0]
        for prompt in prompts:
            counts = Counter(i for i in map(self._index.get, terms_of(prompt, self.ngrams)) if i is not None)
            columns = np.array(sorted(counts), dtype=np.int64)
            tf = np.array([counts[c] for c in columns.tolist()], dtype=np.float64)
            weights = (1.0 + np.log(tf)) * self.idf[columns]
            norm = float(np.sqrt(weights @ weights)) if columns.size else 1.0
            data.extend((weights / norm).tolist())
            indices.extend(columns.tolist())
            indptr.append(len(indices))
        return SparseRows(
            data=np.asarray(data, dtype=np.float64),
            indices=np.asarray(indices, dtype=np.int64),
            indptr=np.asarray(indptr, dtype=np.int64),
            columns=self.size,
        )
