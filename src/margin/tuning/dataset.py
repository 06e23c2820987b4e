"""A distillation dataset on disk (docs/tuning.md, "Datasets"):
`<data_dir>/tuning/datasets/<name>/` holds `train.jsonl`, `validation.jsonl`, `test.jsonl` (one
example a line: `{"messages": [...], "id": "<stable hash>"}` in the chat format PEFT/TRL read, the
last message the teacher's answer) and `manifest.json` (where it came from, the counts, dedup,
redaction, retention).

A dataset is written whole into a hidden sibling folder and renamed into place, so a reader never
sees half of one and a failed build leaves the previous dataset of that name as it was."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

from margin.tuning.errors import DatasetError

Split = Literal["train", "validation", "test"]
SPLITS: tuple[Split, ...] = ("train", "validation", "test")
MANIFEST = "manifest.json"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
ROLES = frozenset({"system", "user", "assistant"})


@dataclass(frozen=True, slots=True)
class DatasetManifest:
    name: str
    source: str  # traffic | prompts | jsonl
    group: str | None  # the model group whose traffic (or eval set) it is for
    team: str | None  # only this team's requests (traffic)
    teacher: str | None  # the tier or model group whose answers are the targets; None: the user's own
    created: float  # unix seconds
    counts: dict[str, int]  # examples per split
    dedup: dict[str, int] = field(default_factory=dict)  # dropped: exact, near
    redaction: bool = True  # the production sample's PII redaction applied to every text
    retention_days: float | None = None  # deleted by `margin tune dataset prune` after this
    teacher_calls: int = 0  # calls made to the teacher for this dataset (ledger rows tagged `tuning`)
    teacher_cost_usd: str = "0"  # their cost as margin reported it (a Decimal's text)
    skipped: dict[str, int] = field(default_factory=dict)  # examples not kept, by why
    settings: dict[str, Any] = field(default_factory=dict)  # what it was built with (since, shares ...)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def expires(self) -> float | None:
        return None if self.retention_days is None else self.created + self.retention_days * 86400

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: Path) -> DatasetManifest:
        try:
            return cls(**{k: data[k] for k in data if k in cls.__dataclass_fields__})
        except TypeError as exc:
            raise DatasetError(f"{where}: not a dataset manifest ({exc})") from None


def datasets_root(data_dir: Path) -> Path:
    return data_dir / "tuning" / "datasets"


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise DatasetError(
            f"dataset name {name!r}: use letters, digits, '.', '_' and '-' (at most 100, not starting with '.')"
        )
    return name


def dataset_dir(data_dir: Path, name: str) -> Path:
    return datasets_root(data_dir) / check_name(name)


def prompt_of(messages: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The messages before the final assistant answer."""
    if messages and messages[-1].get("role") == "assistant":
        return list(messages[:-1])
    return list(messages)


def example_id(messages: Sequence[Mapping[str, Any]]) -> str:
    """A stable id of an example: a hash of its prompt (roles and texts), not of the answer."""
    canonical = orjson.dumps([[str(m.get("role")), str(m.get("content"))] for m in prompt_of(messages)])
    return hashlib.sha256(canonical).hexdigest()[:32]


def check_example(example: Mapping[str, Any], where: str) -> dict[str, Any]:
    """An example as the dataset keeps it; DatasetError naming `where` when it is not one."""
    messages = example.get("messages")
    if not isinstance(messages, list) or len(messages) < 2:
        raise DatasetError(f"{where}: messages: a list of at least a prompt and the answer is required")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise DatasetError(f"{where}: messages[{i}].role: one of {', '.join(sorted(ROLES))}")
        if not isinstance(message.get("content"), str):
            raise DatasetError(f"{where}: messages[{i}].content: text is required")
    if messages[-1]["role"] != "assistant" or not messages[-1]["content"].strip():
        raise DatasetError(f"{where}: the last message must be the assistant's (the teacher's) answer, not empty")
    if not any(m["role"] == "user" for m in messages):
        raise DatasetError(f"{where}: messages: at least one user message is required")
    clean = [{"role": m["role"], "content": m["content"]} for m in messages]
    return {"messages": clean, "id": str(example.get("id") or example_id(clean))}


def write_dataset(data_dir: Path, manifest: DatasetManifest, splits: Mapping[Any, Iterable[Mapping[str, Any]]]) -> Path:
    """Write the dataset whole, then move it into place (replacing one of the same name)."""
    target = dataset_dir(data_dir, manifest.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{manifest.name}.", dir=target.parent))
    try:
        for split in SPLITS:
            lines = b"".join(orjson.dumps(e) + b"\n" for e in splits.get(split, ()))
            (staging / f"{split}.jsonl").write_bytes(lines)
        (staging / MANIFEST).write_bytes(orjson.dumps(manifest.to_json(), option=orjson.OPT_INDENT_2))
        for path in staging.iterdir():
            with path.open("rb") as file:
                os.fsync(file.fileno())
        old = target.with_name(f".{manifest.name}.old-{os.getpid()}-{time.time_ns()}")
        if target.exists():
            target.rename(old)
        staging.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:  # any failure, Ctrl-C included: no half-written staging folder is left; re-raised
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def read_manifest(directory: Path) -> DatasetManifest:
    path = directory / MANIFEST
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise DatasetError(f"no dataset at {directory} ({MANIFEST} is missing)") from None
    except orjson.JSONDecodeError as exc:
        raise DatasetError(f"{path}: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: not a dataset manifest")
    return DatasetManifest.from_json(data, path)


def load_split(directory: Path, split: str) -> list[dict[str, Any]]:
    """The examples of one split: `{"messages": [...], "id": ...}` each, in file order."""
    if split not in SPLITS:
        raise DatasetError(f"split {split!r}: one of {', '.join(SPLITS)}")
    path = directory / f"{split}.jsonl"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"no dataset at {directory} ({path.name} is missing)") from None
    return [check_example(example, f"{path}:{number}") for number, example in jsonl_objects(raw, path)]


def jsonl_objects(raw: bytes, path: Path) -> list[tuple[int, dict[str, Any]]]:
    """The JSON objects of a JSONL file's bytes with their line numbers; blank lines skipped, any
    other line that is not a JSON object a DatasetError naming `path:line`."""
    out: list[tuple[int, dict[str, Any]]] = []
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise DatasetError(f"{path}:{number}: not JSON ({exc})") from None
        if not isinstance(value, dict):
            raise DatasetError(f"{path}:{number}: not a JSON object")
        out.append((number, value))
    return out


def list_datasets(data_dir: Path) -> list[DatasetManifest]:
    """Every dataset under the data directory, newest first (unreadable ones left out)."""
    root = datasets_root(data_dir)
    found: list[DatasetManifest] = []
    for child in sorted(root.iterdir()) if root.is_dir() else ():
        if child.name.startswith(".") or not child.is_dir():
            continue
        try:
            found.append(read_manifest(child))
        except DatasetError:
            continue
    return sorted(found, key=lambda m: m.created, reverse=True)


def prune_expired(data_dir: Path, *, now: float | None = None) -> list[str]:
    """Delete the datasets past their retention; their names."""
    moment = time.time() if now is None else now
    gone = []
    for manifest in list_datasets(data_dir):
        if manifest.expires is not None and manifest.expires < moment:
            shutil.rmtree(dataset_dir(data_dir, manifest.name), ignore_errors=True)
            gone.append(manifest.name)
    return gone
