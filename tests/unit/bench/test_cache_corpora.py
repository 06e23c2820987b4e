"""bench/cache_corpora.py on a tiny Stack Exchange-shaped sample written here (no fetched data): titles
cut from the body's HTML, deduplication by normalised title, duplicate links joined transitively into
clusters, clusters a non-duplicate label contradicts dropped, and cache_realistic.make_splits keeping
every cluster (and its adversarial variants) in one split."""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench"

SAMPLE = "\n".join(
    [
        "duplicate\tHow do I mount an exFAT drive?<p>It fails.</p>\tHow can I get an exFAT drive to mount?<p>x</p>",
        "duplicate\tHow can I get an exFAT drive to mount?<p>y</p>\tMounting exFAT &amp; NTFS<pre>z</pre>",
        "duplicate\tWhat is Package <package> has no install candidate?<p>a</p>\tNo installation candidate<p>b</p>",
        "non-duplicate\thow do i mount an exfat drive<p>same title, other case</p>\tWhy is my fan loud?<p>c</p>",
        "duplicate\tHow do I upgrade Ubuntu?<p>d</p>\tUpgrade to 14.04<p>e</p>",
        "non-duplicate\tUpgrade to 14.04<p>f</p>\tHow do I upgrade Ubuntu?<p>a wrong label</p>",
    ]
)


@pytest.fixture
def modules(monkeypatch: pytest.MonkeyPatch) -> tuple[ModuleType, ModuleType]:
    monkeypatch.syspath_prepend(str(BENCH))
    for name in ("cache_corpora", "cache_realistic"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    import cache_corpora  # from bench/, put on the path above
    import cache_realistic

    return cache_corpora, cache_realistic


def write(directory: Path, names: dict[str, str]) -> None:
    for name, text in names.items():
        (directory / name).write_text(text + "\n", encoding="utf-8")


def test_clusters_deduplicates_and_drops_contradictions(tmp_path: Path, modules: tuple[ModuleType, ModuleType]) -> None:
    corpora, _ = modules
    write(tmp_path, {"askubuntu-val.tsv": SAMPLE, "meta-val.tsv": SAMPLE.splitlines()[0]})
    clustering = corpora.load_stackexchange(tmp_path)
    assert clustering is not None
    texts = sorted(q.text for q in clustering.questions if q.cluster.startswith("askubuntu:"))
    # the upgrade cluster is labelled both ways: dropped whole; "how do i mount..." is one question
    assert clustering.dropped_clusters == 1 and clustering.dropped_questions == 2
    assert texts == [
        "How can I get an exFAT drive to mount?",
        "How do I mount an exFAT drive?",
        "Mounting exFAT & NTFS",
        "No installation candidate",
        "What is Package <package> has no install candidate?",
        "Why is my fan loud?",
    ]
    by_text = {q.text: q for q in clustering.questions if q.cluster.startswith("askubuntu:")}
    exfat = {by_text[t].cluster for t in texts[:3]}
    assert len(exfat) == 1  # joined through the shared middle question
    assert by_text["Why is my fan loud?"].cluster not in exfat
    assert by_text["No installation candidate"].answer == by_text[texts[4]].answer != by_text[texts[0]].answer
    # the same title on another site is another question, in a cluster of that site
    meta = [q for q in clustering.questions if q.cluster.startswith("meta:")]
    assert len(meta) == 2 and meta[0].answer == meta[1].answer
    assert not {q.cluster for q in meta} & exfat


def test_missing_files_and_bad_lines(tmp_path: Path, modules: tuple[ModuleType, ModuleType]) -> None:
    corpora, _ = modules
    assert corpora.load_stackexchange(tmp_path) is None
    write(tmp_path, {"askubuntu-val.tsv": "maybe\ta<p>b</p>\tc<p>d</p>", "meta-val.tsv": SAMPLE})
    with pytest.raises(ValueError, match=r"askubuntu-val\.tsv:1"):
        corpora.load_stackexchange(tmp_path)
    with pytest.raises(ValueError, match="without a title"):
        corpora.parse_pairs("duplicate\t<p>no title</p>\tc<p>d</p>", "x.tsv", "x")


def test_split_keeps_each_cluster_on_one_side(modules: tuple[ModuleType, ModuleType]) -> None:
    corpora, realistic = modules
    # even numbers only: the adversarial "number" rule adds one, so no variant is another real question
    pairs = [
        corpora.Pair(True, f"how do i fix problem {2 * i} with {i % 7} disks", f"problem {2 * i} fix?", "s")
        for i in range(200)
    ]
    pairs += [corpora.Pair(False, f"what is thing {2 * i}", f"where is place {2 * i}", "s") for i in range(200)]
    questions = corpora.cluster_pairs(pairs).questions
    assert len(questions) == 800
    splits = realistic.make_splits(questions)
    sides = [
        {q.cluster for q in (*s.cached, *s.queries) if q.kind == "real"} for s in (splits["train"], splits["test"])
    ]
    assert sides[0] and sides[1] and not sides[0] & sides[1]
    for split in splits.values():
        cached = {q.cluster for q in split.cached}
        real = [q for q in split.queries if q.kind == "real"]
        # a query's duplicate is cached in its split, or nothing of its cluster is cached (a new question)
        assert any(q.cluster in cached for q in real) and any(q.cluster not in cached for q in real)
        texts = [q.text for q in (*split.cached, *split.queries)]
        assert len(texts) == len(set(texts))
    again = realistic.make_splits(list(reversed(questions)))
    assert {q.text for q in again["test"].queries} == {q.text for q in splits["test"].queries}
