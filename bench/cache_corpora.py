"""The labelled question corpora bench/cache_realistic.py replays, in the one shape it reads: a list
of `Question`s, each with the cluster it belongs to and an "answer" that two questions share exactly
when one may be served for the other.

- ComQA (`--corpus comqa`, the loader is in cache_realistic.py): paraphrase clusters with answers.
- Stack Exchange duplicates (`--corpus stackexchange`, here): question titles from AskUbuntu and Meta
  Stack Exchange that users marked as duplicates of one another, and pairs that are not duplicates
  (Bogdanova et al., CoNLL 2015; bench/fetch_stackexchange.py puts them in
  bench/results/stackexchange/). A user's duplicate links join titles into clusters (transitively);
  a title's answer is its cluster, so a hit is right only inside the cluster.

Deduplication: titles identical after normalisation are one question (so a repeated master question
joins its clusters); a cluster that a "non-duplicate" label cuts in two has no knowable answer and
is dropped whole. The train/test split is cache_realistic.make_splits: by a hash of the cluster id,
so no question (and no duplicate of it) lands in both splits.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from margin.caching.semantic.calibrate import normalise

STACKEXCHANGE = Path(__file__).parent / "results" / "stackexchange"
# The validation files of Bogdanova et al.'s two sets ("noclue": the "possible duplicate" notes that
# Stack Exchange adds to a closed question are removed from the bodies); sha256 of each file.
STACKEXCHANGE_FILES = {
    "askubuntu-val.tsv": "c964c50fd7242d47e278eaa156a76d8b87fb4d1cac94f638ee408431d8fe2cf3",
    "meta-val.tsv": "da29446c14b300ef950e39065697020763370aefd4415f0c9ae907d9cd241c72",
}
LABELS = {"duplicate": True, "non-duplicate": False}
_BODY = re.compile(r"<(?:p|pre|blockquote|h[1-6]|ol|ul|hr|div|img|table)\b")


@dataclass(frozen=True)
class Question:
    text: str
    answer: frozenset[str] | None  # None: an adversarial variant (its answer is unknown and no other's)
    cluster: str
    kind: str = "real"  # or the adversarial rule that made it


@dataclass(frozen=True)
class Pair:
    duplicate: bool
    first: str
    second: str
    source: str  # the site: clusters never cross sites


@dataclass(frozen=True)
class Clustering:
    questions: list[Question]
    pairs: int
    dropped_clusters: int  # a "non-duplicate" label inside a duplicate cluster
    dropped_questions: int


def title(post: str) -> str:
    """The title of a post as the files hold it: the title (raw text, may hold "<"), then the body's
    HTML, which starts with a block tag."""
    body = _BODY.search(post)
    return " ".join(html.unescape(post[: body.start()] if body else post).split())


def read_pairs(path: Path) -> list[Pair]:
    """The pairs of a file named <site>-<anything>: the site is the part before the first dash."""
    return parse_pairs(path.read_text(encoding="utf-8"), path.name, path.name.split("-")[0])


def parse_pairs(text: str, name: str, source: str) -> list[Pair]:
    """One labelled pair per line: label, first post, second post (tab-separated). Raises ValueError on
    anything else, naming the line."""
    pairs = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split("\t")
        if len(fields) != 3 or fields[0] not in LABELS:
            raise ValueError(f"{name}:{number}: not 'duplicate|non-duplicate<TAB>post<TAB>post'")
        first, second = title(fields[1]), title(fields[2])
        if not first or not second:
            raise ValueError(f"{name}:{number}: a post without a title")
        pairs.append(Pair(LABELS[fields[0]], first, second, source))
    return pairs


class _Clusters:
    """Union-find over normalised titles."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def add(self, key: str) -> None:
        self.parent.setdefault(key, key)

    def root(self, key: str) -> str:
        while self.parent[key] != key:
            self.parent[key] = self.parent[self.parent[key]]
            key = self.parent[key]
        return key

    def join(self, a: str, b: str) -> None:
        ra, rb = self.root(a), self.root(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def cluster_pairs(pairs: Sequence[Pair]) -> Clustering:
    """Questions from labelled pairs: deduplicated by normalised text, joined by duplicate links,
    clusters contradicted by a non-duplicate label dropped."""
    clusters = _Clusters()
    first_text: dict[str, str] = {}  # the first spelling seen of each normalised title
    for pair in pairs:
        for text in (pair.first, pair.second):
            key = f"{pair.source}\n{normalise(text)}"
            clusters.add(key)
            first_text.setdefault(key, text)
        if pair.duplicate:
            clusters.join(f"{pair.source}\n{normalise(pair.first)}", f"{pair.source}\n{normalise(pair.second)}")
    contradicted = {
        clusters.root(f"{p.source}\n{normalise(p.first)}")
        for p in pairs
        if not p.duplicate
        and clusters.root(f"{p.source}\n{normalise(p.first)}") == clusters.root(f"{p.source}\n{normalise(p.second)}")
    }
    questions, dropped = [], 0
    for key, text in first_text.items():
        root = clusters.root(key)
        if root in contradicted:
            dropped += 1
            continue
        cluster_id = root.replace("\n", ":")
        questions.append(Question(text, frozenset([cluster_id]), cluster_id))
    return Clustering(questions, len(pairs), len(contradicted), dropped)


def load_stackexchange(directory: Path = STACKEXCHANGE) -> Clustering | None:
    """The fetched Stack Exchange files, or None when they are not there."""
    paths = [directory / name for name in STACKEXCHANGE_FILES]
    if not all(p.exists() for p in paths):
        return None
    return cluster_pairs([pair for path in paths for pair in read_pairs(path)])
