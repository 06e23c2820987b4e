"""Puts the Stack Exchange duplicate-question pairs where bench/cache_realistic.py --corpus stackexchange
looks for them (bench/results/stackexchange/, git-ignored). Nothing is committed.

The data: the validation sets of Bogdanova, dos Santos, Barbosa and Zadrozny, "Detecting Semantically
Equivalent Questions in Online User Forums" (CoNLL 2015, ACL Anthology K15-1013), as published with
a replication of that paper by the NLX group of the University of Lisbon (github.com/nlx-group): 1,000
question pairs from AskUbuntu and 1,000 from Meta Stack Exchange, each labelled "duplicate" (a user
closed one question as a duplicate of the other) or "non-duplicate" (a random pair), half of each.
Every line: label, first question (title then body HTML), second question; bench/cache_corpora.py
keeps the titles.

Licence: the text is Stack Exchange user content, which Stack Exchange licenses under Creative
Commons Attribution-ShareAlike (posts before 2011-04-08: CC BY-SA 2.5; to 2018-05-01: CC BY-SA 3.0;
later: CC BY-SA 4.0; stackoverflow.com/help/licensing, and the licence note of the Stack Exchange
data dumps at archive.org/details/stackexchange). The questions were written before the paper
(2015), so CC BY-SA 3.0 or 2.5. Attribution: the AskUbuntu and Meta Stack Exchange users who
wrote the questions, and the selection by Bogdanova et al. The nlx-group repository states no
licence of its own for its code or files (no LICENSE file in any commit; its README points to
lxcenter.di.fc.ul.pt/datasets/msrdsdl/). margin does not redistribute the pairs; whoever shares
them on must keep the attribution and the licence.

The two files were committed to github.com/nlx-group/Replicating-Bogdanova-et-al.-2015-Duplicate-
Question-Detection at 45abfb94 (later removed from its tip), where this script reads them:

    git clone https://github.com/nlx-group/Replicating-Bogdanova-et-al.-2015-Duplicate-Question-Detection /tmp/nlx
    python bench/fetch_stackexchange.py --git-dir /tmp/nlx/.git

or from the replication's tarball (msrdsdl.tar.gz), with its msrdsdl/data/{askubuntu,meta}/noclue/val.tsv:

    python bench/fetch_stackexchange.py --files ASKUBUNTU_VAL META_VAL

Each file's sha256 is checked against the pinned one, then its format (see cache_corpora.read_pairs).
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
from pathlib import Path

from cache_corpora import STACKEXCHANGE, STACKEXCHANGE_FILES, Pair, cluster_pairs, parse_pairs

COMMIT = "45abfb94be7719a4a990d75538fa3c6e584252d3"
IN_REPO = {
    "askubuntu-val.tsv": "msrdsdl/data/askubuntu/noclue/val.tsv",
    "meta-val.tsv": "msrdsdl/data/meta/noclue/val.tsv",
}


def from_git(git_dir: Path) -> dict[str, bytes]:
    return {
        name: subprocess.run(
            ["git", f"--git-dir={git_dir}", "show", f"{COMMIT}:{path}"], check=True, capture_output=True
        ).stdout
        for name, path in IN_REPO.items()
    }


def verify(name: str, raw: bytes) -> list[Pair]:
    """The file's pairs, once its sha256 is the pinned one and every line parses."""
    digest = hashlib.sha256(raw).hexdigest()
    if digest != STACKEXCHANGE_FILES[name]:
        raise SystemExit(f"{name}: sha256 {digest}, expected {STACKEXCHANGE_FILES[name]}: not the pinned file")
    try:
        pairs = parse_pairs(raw.decode("utf-8"), name, name.split("-")[0])
    except (UnicodeDecodeError, ValueError) as error:
        raise SystemExit(f"{name}: {error}") from error
    print(f"{name}: {len(pairs)} pairs, {sum(p.duplicate for p in pairs)} duplicates, sha256 and format ok")
    return pairs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--git-dir", type=Path, help="a clone or mirror of the nlx-group repository (its .git)")
    source.add_argument("--files", type=Path, nargs=2, metavar=("ASKUBUNTU_VAL", "META_VAL"), help="the two files")
    args = parser.parse_args()
    raw = (
        from_git(args.git_dir)
        if args.git_dir
        else {n: p.read_bytes() for n, p in zip(IN_REPO, args.files, strict=True)}
    )
    pairs = [pair for name, body in raw.items() for pair in verify(name, body)]
    STACKEXCHANGE.mkdir(parents=True, exist_ok=True)
    for name, body in raw.items():
        (STACKEXCHANGE / name).write_bytes(body)
    clustering = cluster_pairs(pairs)
    print(
        f"{len(clustering.questions)} distinct titles in {len({q.cluster for q in clustering.questions})} clusters "
        f"({clustering.dropped_clusters} clusters contradicted by a non-duplicate label dropped); "
        f"written to {STACKEXCHANGE}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
