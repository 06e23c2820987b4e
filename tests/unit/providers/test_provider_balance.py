"""Several replicas of one deployment: power of two choices, prefix affinity, per-replica breaker."""

from __future__ import annotations

import random
from collections import Counter

from margin.config.autoscale import BalanceConfig
from margin.providers.balance import Balancer

BASES = [f"http://10.0.0.{i}:8000/v1" for i in range(1, 5)]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def balancer(config: BalanceConfig | None = None, clock: Clock | None = None, bases: list[str] = BASES) -> Balancer:
    return Balancer(bases, config or BalanceConfig(), clock=clock or Clock(), rng=random.Random(7))


def test_one_prefix_keeps_its_replica_and_many_prefixes_spread() -> None:
    b = balancer()
    assert len({b.pick("system: you are a pirate|user: hi").base for _ in range(50)}) == 1
    spread = Counter(b.pick(f"conversation {i}").base for i in range(400))
    assert set(spread) == {e.base for e in b.endpoints}
    assert min(spread.values()) > 60  # rendezvous hashing spreads prefixes about evenly (100 each)


def test_a_loaded_preferred_replica_is_left_for_the_two_choice_pick() -> None:
    b = balancer(BalanceConfig(affinity_slack=2))
    preferred = b.pick("shared prefix")
    preferred.in_flight = 2
    assert b.pick("shared prefix") is preferred  # within the slack of idle replicas
    preferred.in_flight = 3
    picks = {b.pick("shared prefix").base for _ in range(30)}
    assert preferred.base not in picks


def test_two_choices_never_pick_the_single_busiest_replica() -> None:
    b = balancer(BalanceConfig(affinity_chars=0))
    b.endpoints[2].in_flight = 9
    picks = Counter(b.pick(None).base for _ in range(300))
    assert b.endpoints[2].base not in picks and len(picks) == 3


def test_extra_load_counts_like_in_flight_calls() -> None:
    b = balancer(BalanceConfig(affinity_chars=0))
    b.extra_load = lambda e: 50.0 if e is b.endpoints[0] else 0.0  # e.g. a deep scraped queue
    assert b.endpoints[0].base not in {b.pick(None).base for _ in range(200)}


def test_a_failed_replica_is_out_for_the_cooldown_then_probed() -> None:
    clock = Clock()
    b = balancer(BalanceConfig(failures=2, cooldown_s=10), clock)
    dead = b.pick("p")
    b.failed(dead)
    assert b.pick("p") is dead  # one failure is under the threshold
    b.failed(dead)
    assert dead.base not in {b.pick("p").base for _ in range(50)}
    clock.now += 10.5
    assert b.pick("p") is dead  # back after the cooldown: the prefix's replica again
    b.reached(dead)
    assert dead.failures == 0


def test_with_every_replica_out_the_least_recently_failed_is_tried() -> None:
    clock = Clock()
    b = balancer(BalanceConfig(failures=1, cooldown_s=10), clock, bases=BASES[:2])
    b.failed(b.endpoints[0])
    clock.now += 1
    b.failed(b.endpoints[1])
    assert b.pick("x") is b.endpoints[0]


def test_a_replica_leaving_moves_only_its_own_prefixes() -> None:
    before = balancer()
    after = balancer(bases=BASES[:3])
    moved = [p for p in (f"c{i}" for i in range(300)) if before.pick(p).base != after.pick(p).base]
    assert all(before.pick(p).base == BASES[3] for p in moved)


def test_begin_and_end_count_in_flight_calls() -> None:
    b = balancer()
    e = b.pick("p")
    b.begin(e)
    b.begin(e)
    b.end(e)
    assert (e.in_flight, e.picked) == (1, 2)


def test_describe_names_host_and_port_never_credentials() -> None:
    b = balancer(bases=["http://user:secret@10.0.0.9:8000/v1", BASES[0]])
    described = b.describe()
    assert [d["endpoint"] for d in described] == ["10.0.0.9:8000", "10.0.0.1:8000"]
    assert "secret" not in repr(described)


def test_a_drained_replica_gets_no_new_calls_until_undrained() -> None:
    b = balancer(BalanceConfig(affinity_chars=0))
    host = b.describe()[0]["endpoint"]
    assert isinstance(host, str) and b.set_drained(host, True) and not b.set_drained("nowhere:1", True)
    picks = Counter(b.pick(None).base for _ in range(300))
    assert b.endpoints[0].base not in picks and len(picks) == len(b.endpoints) - 1
    assert b.describe()[0]["drained"] is True and not b.all_drained
    b.set_drained(host, False)
    assert b.endpoints[0].base in Counter(b.pick(None).base for _ in range(300))
    for e in b.describe():
        b.set_drained(str(e["endpoint"]), True)
    assert b.all_drained
