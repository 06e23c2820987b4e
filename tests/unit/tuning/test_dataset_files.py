"""The dataset on disk: written whole, read back split by split, bad files named."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from margin.tuning.dataset import (
    DatasetManifest,
    dataset_dir,
    example_id,
    list_datasets,
    load_split,
    prune_expired,
    read_manifest,
    write_dataset,
)
from margin.tuning.errors import DatasetError


def _example(prompt: str, answer: str) -> dict[str, object]:
    messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
    return {"messages": messages, "id": example_id(messages)}


def _manifest(name: str, counts: dict[str, int], retention: float | None = None) -> DatasetManifest:
    return DatasetManifest(name, "jsonl", "support", None, None, time.time(), counts, retention_days=retention)


def test_written_dataset_reads_back(tmp_path: Path) -> None:
    splits = {"train": [_example("a", "1"), _example("b", "2")], "test": [_example("c", "3")]}
    where = write_dataset(tmp_path, _manifest("ds", {"train": 2, "validation": 0, "test": 1}), splits)
    assert where == dataset_dir(tmp_path, "ds")
    assert [e["messages"][0]["content"] for e in load_split(where, "train")] == ["a", "b"]
    assert load_split(where, "validation") == []
    assert read_manifest(where).counts == {"train": 2, "validation": 0, "test": 1}
    assert [m.name for m in list_datasets(tmp_path)] == ["ds"]


def test_rewrite_replaces_whole_and_leaves_no_staging(tmp_path: Path) -> None:
    write_dataset(tmp_path, _manifest("ds", {"train": 1}), {"train": [_example("a", "1")]})
    write_dataset(tmp_path, _manifest("ds", {"train": 1}), {"train": [_example("z", "9")]})
    assert [e["messages"][0]["content"] for e in load_split(dataset_dir(tmp_path, "ds"), "train")] == ["z"]
    assert sorted(p.name for p in dataset_dir(tmp_path, "ds").parent.iterdir()) == ["ds"]


def test_example_id_is_the_prompts_not_the_answers() -> None:
    assert example_id(_example("a", "1")["messages"]) == example_id(_example("a", "2")["messages"])  # type: ignore[arg-type]
    assert example_id(_example("a", "1")["messages"]) != example_id(_example("b", "1")["messages"])  # type: ignore[arg-type]


def test_bad_line_is_named(tmp_path: Path) -> None:
    where = write_dataset(tmp_path, _manifest("ds", {"train": 1}), {"train": [_example("a", "1")]})
    (where / "train.jsonl").write_bytes(orjson.dumps({"messages": [{"role": "user", "content": "q"}]}) + b"\n")
    with pytest.raises(DatasetError, match=r"train.jsonl:1: messages"):
        load_split(where, "train")
    with pytest.raises(DatasetError, match="split 'dev'"):
        load_split(where, "dev")
    with pytest.raises(DatasetError, match="no dataset"):
        read_manifest(tmp_path / "nothing")
    with pytest.raises(DatasetError, match="dataset name"):
        dataset_dir(tmp_path, "../escape")


def test_expired_datasets_are_pruned(tmp_path: Path) -> None:
    write_dataset(tmp_path, _manifest("old", {"train": 1}, retention=1.0), {"train": [_example("a", "1")]})
    write_dataset(tmp_path, _manifest("kept", {"train": 1}), {"train": [_example("a", "1")]})
    assert prune_expired(tmp_path, now=time.time() + 2 * 86400) == ["old"]
    assert [m.name for m in list_datasets(tmp_path)] == ["kept"]
