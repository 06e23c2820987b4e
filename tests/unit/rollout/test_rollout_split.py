"""The split on the request path: its buckets never change across versions (replicas of two versions
during an upgrade must agree on every user's arm), the arms and the answer's outcomes follow the
shares, and an assignment is an immutable object shared by the requests that land on it."""

from __future__ import annotations

import hashlib

import pytest

from margin.rollout.split import SCALE, GroupSplit, SplitTable, bucket


def keyed_blake2b(salt: str, key: str) -> int:
    """The bucket as documented: keyed BLAKE2b (8 bytes, big-endian) modulo SCALE."""
    digest = hashlib.blake2b(key.encode(), digest_size=8, key=salt.encode()[:64]).digest()
    return int.from_bytes(digest, "big") % SCALE


def test_buckets_are_the_documented_hash_and_never_change() -> None:
    assert [bucket("ro_abc", k) for k in ("session:s1", "user:o/u", "req_1", "")] == [1076, 7367, 4490, 690]
    assert bucket("margin-sample", "req_42") == 8722  # the production sample's choice
    for i in range(2000):
        salt, key = f"ro_{i % 7}", f"key:{i}"
        assert bucket(salt, key) == keyed_blake2b(salt, key)
    long_salt = "s" * 100  # a key longer than BLAKE2b's 64 bytes is cut there
    assert bucket(long_salt, "k") == keyed_blake2b(long_salt, "k")


def split(**shares: int) -> GroupSplit:
    values = {"candidate_bp": 2500, "shadow_bp": 0, "grade_bp": 0, "judge_bp": 0, "live": True} | shares
    return GroupSplit(rollout_id="ro_1", model_group="chat", stable="big", candidate="small", step=1, **values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "shares",
    [
        {"candidate_bp": 2500, "grade_bp": 10_000, "judge_bp": 3000},
        {"candidate_bp": 0, "shadow_bp": 5000, "grade_bp": 2000},
        {"candidate_bp": 10_000},
        {"candidate_bp": 0, "live": False},
        {"candidate_bp": 10_000, "shadow_bp": 10_000, "grade_bp": 10_000, "live": False},
    ],
)
def test_each_request_gets_its_arm_and_outcomes_by_the_shares(shares: dict[str, int]) -> None:
    group = split(**shares)
    table = SplitTable()
    table.replace([group])
    for i in range(3000):
        sticky, request_id = f"session:{i % 400}", f"req_{i}"
        got = table.assign("chat", sticky, request_id)
        assert got is not None
        by_request = keyed_blake2b("ro_1", request_id)
        if not group.live:
            arm, shadow, grade, judge = "promoted", False, False, False
        else:
            on_candidate = group.candidate_bp >= SCALE or keyed_blake2b("ro_1", sticky) < group.candidate_bp
            arm = "candidate" if on_candidate else "stable"
            shadow = arm == "stable" and by_request < group.shadow_bp
            grade, judge = by_request < group.grade_bp, by_request < group.judge_bp
        assert (got.arm, got.shadow, got.grade, got.judge) == (arm, shadow, grade, judge)
        assert (got.rollout_id, got.model_group, got.step, got.live) == ("ro_1", "chat", 1, group.live)
        assert got is table.assign("chat", sticky, request_id)  # one shared object: nothing built per request
    assert table.assign("plain", "session:1", "req_1") is None


def test_the_shares_are_honoured_and_sticky() -> None:
    table = SplitTable()
    table.replace([split(candidate_bp=2500, shadow_bp=5000, grade_bp=2000)])
    arms = [table.assign("chat", f"user:o/{i}", f"req_{i}") for i in range(20_000)]
    candidate = sum(a is not None and a.arm == "candidate" for a in arms) / len(arms)
    graded = sum(a is not None and a.grade for a in arms) / len(arms)
    shadowed = sum(a is not None and a.shadow for a in arms) / sum(a is not None and a.arm == "stable" for a in arms)
    assert abs(candidate - 0.25) < 0.015 and abs(graded - 0.20) < 0.015 and abs(shadowed - 0.5) < 0.02
    again = [table.assign("chat", f"user:o/{i}", f"other_{i}") for i in range(20_000)]
    assert [a.arm for a in again if a] == [a.arm for a in arms if a]  # the same user, the same arm
