"""Deduplication and splitting of a dataset's examples (docs/tuning.md, "Datasets").

Exact duplicates share a prompt id (margin.tuning.dataset.example_id): the first one kept wins.
Near duplicates are found on the prompt's user text as vectors of character 3-5-grams (margin's
hashing embedder, the one the learned router falls back to): two prompts whose cosine is at least
`near_duplicate` are one prompt (the later dropped); at least `same_split`, they are related and
kept, but in one cluster. A cluster goes whole into one split, chosen by a stable hash of the
smallest prompt id in it (whatever the order examples came in), so a prompt (or a near copy of it)
never appears in two splits."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from margin.embedding.hashing import HashingEmbedder
from margin.tuning.dataset import SPLITS, Split, prompt_of

_BLOCK = 512  # rows compared at once: a block x n similarity matrix of float32
_DIM = 1024


@dataclass(slots=True)
class Deduplicated:
    kept: list[dict[str, Any]]
    clusters: list[int]  # kept[i]'s cluster: a label (its first member's index when deduplicated)
    dropped: dict[str, int] = field(default_factory=lambda: {"exact": 0, "near": 0})


def user_text(example: Mapping[str, Any]) -> str:
    return "\n".join(str(m.get("content", "")) for m in prompt_of(example["messages"]) if m.get("role") == "user")


def deduplicate(examples: Sequence[dict[str, Any]], *, near_duplicate: float, same_split: float) -> Deduplicated:
    """The examples without exact or near duplicates (first kept), and each one's cluster."""
    seen: set[str] = set()
    unique: list[dict[str, Any]] = []
    exact = 0
    for example in examples:
        if example["id"] in seen:
            exact += 1
            continue
        seen.add(example["id"])
        unique.append(example)
    if not unique:
        return Deduplicated([], [], {"exact": exact, "near": 0})
    vectors = HashingEmbedder(dim=_DIM).embed([user_text(e) for e in unique])
    parent = list(range(len(unique)))
    dropped = np.zeros(len(unique), dtype=bool)
    for start in range(0, len(unique), _BLOCK):
        block = vectors[start : start + _BLOCK] @ vectors.T
        for offset, row in enumerate(block):
            i = start + offset
            if dropped[i]:
                continue
            for j in np.nonzero(row[i + 1 :] >= same_split)[0] + i + 1:
                if dropped[j]:
                    continue
                if row[j] >= near_duplicate:
                    dropped[j] = True
                else:
                    _union(parent, i, int(j))
    kept_index = [i for i in range(len(unique)) if not dropped[i]]
    position = {old: new for new, old in enumerate(kept_index)}
    roots = [_find(parent, i) for i in kept_index]
    first: dict[int, int] = {}
    clusters = [first.setdefault(root, position[i]) for i, root in zip(kept_index, roots, strict=True)]
    return Deduplicated([unique[i] for i in kept_index], clusters, {"exact": exact, "near": int(dropped.sum())})


def _find(parent: list[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def _union(parent: list[int], a: int, b: int) -> None:
    ra, rb = _find(parent, a), _find(parent, b)
    if ra != rb:
        parent[max(ra, rb)] = min(ra, rb)


def split_of(key: str, *, validation: float, test: float, salt: str) -> Split:
    """A stable split for a cluster key: the same key always lands in the same split."""
    digest = hashlib.sha256(f"{salt}\x00{key}".encode()).digest()
    share = int.from_bytes(digest[:8], "big") / 2**64
    if share < test:
        return "test"
    if share < test + validation:
        return "validation"
    return "train"


def assign_splits(
    deduped: Deduplicated, *, validation: float, test: float, salt: str
) -> dict[Split, list[dict[str, Any]]]:
    """Each cluster whole into one split, by the hash of its smallest example id."""
    keys: dict[int, str] = {}
    for example, cluster in zip(deduped.kept, deduped.clusters, strict=True):
        keys[cluster] = min(keys.get(cluster, example["id"]), example["id"])
    out: dict[Split, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    for example, cluster in zip(deduped.kept, deduped.clusters, strict=True):
        out[split_of(keys[cluster], validation=validation, test=test, salt=salt)].append(example)
    return out
