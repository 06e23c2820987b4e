"""Which checkpoint a resumed job starts from: the newest complete one.

The trainer writes a checkpoint's files one after another (adapter, optimizer, scheduler, RNG
state, `trainer_state.json` last), so a job killed while saving leaves a torn checkpoint. One is
complete when its trainer state parses and names its own step, and every weight file is whole:
the safetensors header's offsets match the file's size, and the torch files (zip archives) pass
their CRC check. A torn or corrupt checkpoint is moved aside (`checkpoints/torn-checkpoint-N-...`,
kept for a post-mortem) with a message, and the previous one is used.
"""

from __future__ import annotations

import json
import re
import struct
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

_NAME = re.compile(r"^checkpoint-(\d+)$")
ADAPTER_FILE = "adapter_model.safetensors"
STATE_FILE = "trainer_state.json"
TORCH_FILES = ("optimizer.pt", "scheduler.pt", "rng_state.pth")


def checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """The checkpoints under `directory`, oldest first."""
    found = []
    for child in directory.iterdir() if directory.is_dir() else ():
        match = _NAME.match(child.name)
        if match and child.is_dir():
            found.append((int(match.group(1)), child))
    return sorted(found)


def problem(step: int, checkpoint: Path) -> str | None:
    """Why this checkpoint cannot be resumed from; None when it is complete."""
    try:
        state = json.loads((checkpoint / STATE_FILE).read_bytes())
    except FileNotFoundError:
        return f"{STATE_FILE} is missing (the save did not finish)"
    except ValueError as exc:
        return f"{STATE_FILE} is not JSON ({exc})"
    if not isinstance(state, dict) or state.get("global_step") != step:
        return f"{STATE_FILE} does not name step {step}"
    return _safetensors_problem(checkpoint / ADAPTER_FILE) or next(
        (p for name in TORCH_FILES if (p := _zip_problem(checkpoint / name))), None
    )


def _safetensors_problem(path: Path) -> str | None:
    try:
        with path.open("rb") as file:
            head = file.read(8)
            if len(head) < 8:
                return f"{path.name} is truncated"
            (size,) = struct.unpack("<Q", head)
            header = json.loads(file.read(size))
    except FileNotFoundError:
        return f"{path.name} is missing"
    except ValueError:
        return f"{path.name} has a corrupt header"
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
    expected = 8 + size + max(ends, default=0)
    actual = path.stat().st_size
    if actual != expected:
        return f"{path.name} is {actual} bytes, its header says {expected}"
    return None


def _zip_problem(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except FileNotFoundError:
        return f"{path.name} is missing"
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        return f"{path.name} is corrupt ({exc})"
    return None if bad is None else f"{path.name} is corrupt ({bad} fails its CRC)"


def latest_complete(directory: Path, say: Callable[[str], None]) -> Path | None:
    """The newest complete checkpoint (None: start from step 0); torn ones are moved aside."""
    for step, checkpoint in reversed(checkpoints(directory)):
        reason = problem(step, checkpoint)
        if reason is None:
            return checkpoint
        aside = checkpoint.with_name(f"torn-{checkpoint.name}-{time.time_ns()}")
        checkpoint.rename(aside)
        say(f"checkpoint {checkpoint.name} is unusable: {reason}; moved to {aside.name}, trying the previous one")
    return None
