"""Puts the ComQA question clusters where bench/cache_realistic.py looks for them
(bench/results/comqa/, git-ignored). Nothing is committed: the data stays with whoever fetched it.

ComQA (Abujabal et al., NAACL 2019): 11,214 real user questions from WikiAnswers, grouped by
crowd workers into paraphrase clusters, each cluster annotated with its answers, published by the
authors at qa.mpi-inf.mpg.de/comqa. Licence: none stated that we could find. The Hugging Face
dataset card `com_qa` (which names one of the authors as point of contact) declares "license:
unknown"; the paper (ACL Anthology N19-1027, arXiv 1809.09528) states none for the data (the
Anthology's licence covers the paper); aorogat/CBench ships no licence file; a third-party
mirror's "MIT" label is not the authors'. Questions from WikiAnswers are user content under that site's terms. So margin
does not redistribute ComQA: this script copies it into a git-ignored folder for local research
use (measuring the cache), and nothing of it is committed. The one derived artefact in the repo,
the learned decision's weights (margin/caching/semantic/learned-comqa.json: 15 weights, a bias and
feature means fitted on the train split), contains no text of the data set. Check the authors'
page before any other use. Its train and dev files (cluster format) are also kept in a public
GitHub repository, aorogat/CBench, at commit e473c69 (later removed from its tip), which is where
this script reads them from:

    git clone https://github.com/aorogat/CBench /tmp/CBench     # or any clone or mirror of it
    python bench/fetch_comqa.py --git-dir /tmp/CBench/.git

or, with the two files downloaded from the authors' page:

    python bench/fetch_comqa.py --files comqa_train.json comqa_dev.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

COMMIT = "e473c69bea1dfb9fec2ad9dc943a7cfaee17fe0d"
IN_REPO = "data/Freebase/No_SPARQL/ComQA/"
NAMES = ("comqa_train.json", "comqa_dev.json")
TARGET = Path(__file__).parent / "results" / "comqa"


def from_git(git_dir: Path) -> dict[str, bytes]:
    return {
        name: subprocess.run(
            ["git", f"--git-dir={git_dir}", "show", f"{COMMIT}:{IN_REPO}{name}"], check=True, capture_output=True
        ).stdout
        for name in NAMES
    }


def check(name: str, raw: bytes) -> int:
    clusters = json.loads(raw)
    if not isinstance(clusters, list) or not all({"cluster_id", "questions", "answers"} <= set(c) for c in clusters):
        raise SystemExit(f"{name}: not ComQA's cluster format (cluster_id, questions, answers)")
    return len(clusters)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--git-dir", type=Path, help="a clone or mirror of aorogat/CBench (its .git directory)")
    source.add_argument("--files", type=Path, nargs=2, metavar=("TRAIN", "DEV"), help="the authors' two files")
    args = parser.parse_args()
    raw = (
        from_git(args.git_dir) if args.git_dir else {n: p.read_bytes() for n, p in zip(NAMES, args.files, strict=True)}
    )
    TARGET.mkdir(parents=True, exist_ok=True)
    for name, body in raw.items():
        print(f"{name}: {check(name, body)} clusters")
        (TARGET / name).write_bytes(body)
    print(f"written to {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
