"""Which arm answers a request: the only rollout code on the request path.

A pure, sticky hash: the same rollout and the same sticky key (the `x-margin-session` header, else
the user, else the key, else the request id) land in the same one of 10,000 buckets on every replica
and every request, and the candidate takes buckets below its share. Shares only grow from step to
step, so a user once on the candidate stays on it; a rollback empties the table entry, so every user
is back on stable at the replica's next refresh. Lookups read an immutable snapshot that the engine
swaps whole (no lock, no I/O).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from margin.config.rollout import RolloutSettings
from margin.storage.rollouts import RolloutRecord

SCALE = 10_000  # buckets: shares are honoured to 0.01%
RequestArm = Literal["stable", "candidate", "promoted", "shadow", "judge"]


def bucket(salt: str, key: str) -> int:
    """0..SCALE-1, uniform and stable across processes and versions (not Python's salted hash())."""
    digest = hashlib.blake2b(key.encode(), digest_size=8, key=salt.encode()[:64]).digest()
    return int.from_bytes(digest, "big") % SCALE


@dataclass(frozen=True, slots=True)
class GroupSplit:
    rollout_id: str
    model_group: str
    stable: str
    candidate: str
    step: int
    live: bool  # False: a promoted rollout the config has not caught up with (all traffic to candidate)
    candidate_bp: int  # buckets (of SCALE) sent to the candidate
    shadow_bp: int  # share of stable requests mirrored to the candidate
    grade_bp: int  # share of answers the online grader sees
    judge_bp: int = 0  # share of answers (canary) or shadow pairs the online judge sees


@dataclass(frozen=True, slots=True)
class Assignment:
    rollout_id: str
    model_group: str
    arm: RequestArm
    step: int
    stable: str
    candidate: str
    shadow: bool  # also send this request to the candidate, off the client path
    grade: bool  # grade this answer with the group's online grader
    live: bool  # feeds the rollout's signals
    judge: bool = False  # have the online judge grade this answer (or, shadowed, the shadow pair)

    def reroute(self, deployments: tuple[str, ...]) -> tuple[str, ...]:
        """The route for this arm: on the candidate arm the candidate takes the stable deployment's
        place, and the stable one follows it as the fallback (a failing candidate costs the client
        nothing; its failure still counts against the candidate)."""
        if self.arm == "stable" or self.stable not in deployments:
            return deployments
        out: list[str] = []
        for name in deployments:
            if name == self.stable:
                out.extend((self.candidate, self.stable))
            elif name != self.candidate:
                out.append(name)
        return tuple(out)


def split_of(record: RolloutRecord, settings: RolloutSettings) -> GroupSplit | None:
    """What a rollout in its current state does to traffic (None: nothing yet, or nothing any more)."""
    shares = {"candidate": 0.0, "shadow": 0.0}
    if record.state == "promoted":
        shares["candidate"] = 1.0
    elif record.state == "shadow":
        shares["shadow"] = settings.shadow.share
    elif record.state == "canary":
        shares["candidate"] = settings.steps[record.step].share
    else:
        return None
    return GroupSplit(
        rollout_id=record.rollout_id, model_group=record.model_group, stable=record.stable,
        candidate=record.candidate, step=record.step, live=record.state != "promoted",
        candidate_bp=round(shares["candidate"] * SCALE), shadow_bp=round(shares["shadow"] * SCALE),
        grade_bp=round(settings.grade_share * SCALE) if settings.online_grader is not None else 0,
        judge_bp=_judge_bp(record, settings),
    )  # fmt: skip


def _judge_bp(record: RolloutRecord, settings: RolloutSettings) -> int:
    """A scored judge sees a share of the canary's answers and of the shadow pairs; a pairwise judge
    needs a pair, so it only sees shadow pairs."""
    judge = settings.judge
    if judge is None or (record.state == "canary" and judge.mode == "pairwise"):
        return 0
    return round(judge.share * SCALE)


class SplitTable:
    """Model group -> its rollout's split, as last read from the store."""

    def __init__(self) -> None:
        self._groups: Mapping[str, GroupSplit] = {}

    def replace(self, splits: Iterable[GroupSplit]) -> None:
        self._groups = {s.model_group: s for s in splits}  # one assignment: readers see old or new

    def get(self, model_group: str) -> GroupSplit | None:
        return self._groups.get(model_group)

    def splits(self) -> list[GroupSplit]:
        return list(self._groups.values())

    def assign(self, model_group: str, sticky_key: str, request_id: str) -> Assignment | None:
        split = self._groups.get(model_group)
        if split is None:
            return None
        on_candidate = split.candidate_bp >= SCALE or bucket(split.rollout_id, sticky_key) < split.candidate_bp
        arm: RequestArm = "promoted" if not split.live else "candidate" if on_candidate else "stable"
        by_request = bucket(split.rollout_id, request_id) if split.live else SCALE
        return Assignment(
            rollout_id=split.rollout_id, model_group=model_group, arm=arm, step=split.step, stable=split.stable,
            candidate=split.candidate, shadow=arm == "stable" and by_request < split.shadow_bp,
            grade=by_request < split.grade_bp, live=split.live, judge=by_request < split.judge_bp,
        )  # fmt: skip
