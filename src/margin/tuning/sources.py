"""Where a dataset's candidates come from (docs/tuning.md, "Datasets"): a model group's production
sample (already redacted when it was kept), a prompt file for the teacher to answer, or a JSONL of
the user's own answered conversations; and who the teacher is."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from margin.config.model import MarginConfig, ModelGroupConfig
from margin.storage.rollouts import SampleRecord
from margin.tuning.build import Candidate
from margin.tuning.dataset import ROLES, jsonl_objects
from margin.tuning.errors import DatasetError, TeacherUnknown

TIER_PIN = "margin_tier"  # the request metadata key that pins a tier (margin.routing.policies.features)
_SINCE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass(frozen=True, slots=True)
class TeacherRoute:
    """How to ask the teacher: `model` with `params` (a tier pin), and the deployments that are it."""

    name: str
    model: str
    params: dict[str, Any] = field(default_factory=dict)
    deployments: frozenset[str] = frozenset()


def parse_since(text: str) -> float:
    """`7d`, `12h`, `30m`, `2w` -> seconds."""
    match = _SINCE.match(text.strip())
    if match is None:
        raise DatasetError(f"--since {text!r}: a number and a unit, s m h d or w (e.g. 7d)")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def find_group(config: MarginConfig, name: str) -> ModelGroupConfig:
    for group in config.models:
        if name == group.name or name in group.aliases:
            return group
    known = ", ".join(g.name for g in config.models) or "none"
    raise DatasetError(f"unknown model group {name!r} (configured: {known})")


def resolve_teacher(config: MarginConfig, teacher: str, group: str | None) -> TeacherRoute:
    """A tier of `group` (asked as the group with the tier pinned), else a model group or alias."""
    own = find_group(config, group) if group is not None else None
    for tier in own.tiers if own is not None else []:
        if tier.name == teacher:
            return TeacherRoute(teacher, own.name, {"metadata": {TIER_PIN: teacher}}, frozenset(tier.deployments))  # type: ignore[union-attr]
    for candidate in config.models:
        if teacher == candidate.name or teacher in candidate.aliases:
            return TeacherRoute(teacher, candidate.name, {}, frozenset(candidate.deployments))
    tiers = ", ".join(t.name for t in own.tiers) if own is not None and own.tiers else "none"
    groups = ", ".join(g.name for g in config.models) or "none"
    where = f"a tier of {group!r} (tiers: {tiers}) nor " if group is not None else ""
    raise TeacherUnknown(f"teacher {teacher!r} is neither {where}a model group (configured: {groups})")


async def traffic_candidates(
    samples: Sequence[SampleRecord], *, since: float, teacher: TeacherRoute, teams: Sequence[str] = (),
    team_of: Callable[[str], Awaitable[str | None]] | None = None,
) -> tuple[list[Candidate], dict[str, int]]:  # fmt: skip
    """The samples kept since `since` (unix seconds), of `teams` if any; a sample the teacher
    answered keeps its answer, the others are asked again. Also: how many were left out, by why."""
    out: list[Candidate] = []
    skipped: dict[str, int] = {}
    for sample in samples:
        if sample.at < since:
            skipped["older"] = skipped.get("older", 0) + 1
            continue
        if teams and (team_of is None or await team_of(sample.request_id) not in teams):
            skipped["other_team"] = skipped.get("other_team", 0) + 1
            continue
        answer = sample.answer if sample.deployment in teacher.deployments else None
        out.append(Candidate(list(sample.messages), answer, origin=sample.sample_id))
    return out, skipped


def _lines(path: Path) -> list[tuple[int, dict[str, Any]]]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    out = jsonl_objects(raw, path)
    if not out:
        raise DatasetError(f"{path}: no examples in it (the file is empty)")
    return out


def _messages(value: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        raise DatasetError(f"{where}: messages: a non-empty list is required")
    for i, message in enumerate(value):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise DatasetError(f"{where}: messages[{i}].role: one of {', '.join(sorted(ROLES))}")
        if not isinstance(message.get("content"), str):
            raise DatasetError(f"{where}: messages[{i}].content: text is required")
    return [{"role": m["role"], "content": m["content"]} for m in value]


def read_prompts(path: Path) -> list[Candidate]:
    """A prompt a line: `{"messages": [...]}` (an assistant answer at the end is dropped: the teacher
    answers) or `{"prompt": "...", "system": "..."}`."""
    out = []
    for number, value in _lines(path):
        where = f"{path}:{number}"
        if "messages" in value:
            messages = _messages(value["messages"], where)
            if messages[-1]["role"] == "assistant":
                messages = messages[:-1]
        elif isinstance(value.get("prompt"), str):
            system = value.get("system")
            messages = [{"role": "system", "content": system}] if isinstance(system, str) else []
            messages.append({"role": "user", "content": value["prompt"]})
        else:
            raise DatasetError(f"{where}: give messages (a list) or prompt (text)")
        out.append(Candidate(messages, None, origin=where))
    return out


def read_answered(path: Path) -> list[Candidate]:
    """The user's own examples: `{"messages": [..., {"role": "assistant", "content": ANSWER}]}`."""
    out = []
    for number, value in _lines(path):
        where = f"{path}:{number}"
        messages = _messages(value.get("messages"), where)
        if messages[-1]["role"] != "assistant" or len(messages) < 2:
            raise DatasetError(f"{where}: messages: the last message must be the assistant's answer")
        out.append(Candidate(messages[:-1], messages[-1]["content"], origin=where))
    return out
