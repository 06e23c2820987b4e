"""Which arm answers a request: the only rollout code on the request path.

A pure, sticky hash: the same rollout and the same sticky key (the `x-margin-session` header, else
the user, else the key, else the request id) land in the same one of 10,000 buckets on every replica
and every request, and the candidate takes buckets below its share. Shares only grow from step to
step, so a user once on the candidate stays on it; a rollback empties the table entry, so every user
is back on stable at the replica's next refresh. Lookups read an immutable snapshot that the engine
swaps whole (no lock, no I/O).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from margin.config.rollout import RolloutSettings
from margin.storage.rollouts import RolloutRecord

SCALE = 10_000  # buckets: shares are honoured to 0.01%
RequestArm = Literal["stable", "candidate", "promoted", "shadow", "judge"]


def bucket(salt: str, key: str) -> int:
    """0..SCALE-1, uniform and stable across processes and versions (not Python's salted hash()):
    keyed BLAKE2b of `key` under `salt`. The keyed state is made once per salt and copied."""
    hasher = _keyed(salt).copy()
    hasher.update(key.encode())
    return int.from_bytes(hasher.digest(), "big") % SCALE


@functools.lru_cache(maxsize=256)
def _keyed(salt: str) -> hashlib.blake2b:
    """BLAKE2b keyed by `salt`, before any data: copying it costs less than keying a new one."""
    return hashlib.blake2b(digest_size=8, key=salt.encode()[:64])


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
    # The assignments handed out so far, by (arm, shadow, grade, judge): immutable, so shared by
    # every request that lands on the same ones (no object built per request).
    _made: dict[tuple[RequestArm, bool, bool, bool], Assignment] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def assign(self, sticky_key: str, request_id: str) -> Assignment:
        """This request's arm (by a hash of its sticky key) and what is done with its answer (by a
        hash of its id); a hash is only taken when a share between none and all depends on it."""
        if not self.live:
            return self._assignment("promoted", False, False, False)
        on_candidate = self.candidate_bp >= SCALE or (
            self.candidate_bp > 0 and bucket(self.rollout_id, sticky_key) < self.candidate_bp
        )
        arm: RequestArm = "candidate" if on_candidate else "stable"
        by_request = bucket(self.rollout_id, request_id) if self.shadow_bp or self.grade_bp or self.judge_bp else SCALE
        shadow = arm == "stable" and by_request < self.shadow_bp
        return self._assignment(arm, shadow, by_request < self.grade_bp, by_request < self.judge_bp)

    def _assignment(self, arm: RequestArm, shadow: bool, grade: bool, judge: bool) -> Assignment:
        made = self._made.get((arm, shadow, grade, judge))
        if made is None:
            made = self._made[(arm, shadow, grade, judge)] = Assignment(
                rollout_id=self.rollout_id, model_group=self.model_group, arm=arm, step=self.step,
                stable=self.stable, candidate=self.candidate, shadow=shadow, grade=grade, live=self.live,
                judge=judge,
            )  # fmt: skip
        return made


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
        return None if split is None else split.assign(sticky_key, request_id)
