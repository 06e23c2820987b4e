"""A reservation as data that outlives the process: what was held on which counter, and the plans
that settle it, computable by any replica from the JSON alone.

The payload is written with the reservation (in the counter store as an `Intent`, and in the
replica's local journal). From it, whoever settles the reservation derives one of four plans:

- `settle_plan`: release the holds, spend what the request actually used (the normal end);
- `spent_plan`: release the holds, spend the reserved amounts (outcome unknown: a dead replica's
  reservation, or one whose lease ended without a settle: never silently released);
- `release_plan`: release the holds, spend nothing (provably nothing went upstream);
- `correction_plan`: after a `spent_plan`, move each spend counter by actual - reserved;
- `spend_plan`: after a `release_plan`, spend what was used after all (the holds are gone).

`late_plans` gathers what a settle that knows the actual amounts applies, whatever state it finds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from margin.storage.protocols import HOLD_SUFFIX, Adjust, IntentState

SPENT_KINDS = frozenset({"usd", "tokens", "tpm"})  # kinds whose settle records an amount spent


@dataclass(frozen=True, slots=True)
class HeldCounter:
    """One counter a reservation charged."""

    name: str
    kind: str  # usd | tokens | tpm | rpm | concurrency
    hold: int | None  # lease slot of the hold; None: counted outright (requests per minute)
    amount: int  # reserved: nano-USD for usd, tokens for tokens/tpm, 1 otherwise
    hold_expires: float
    bucket: int  # the window's current bucket, where spend lands
    bucket_expires: float

    def as_json(self) -> list[Any]:
        return [self.name, self.kind, self.hold, self.amount, self.hold_expires, self.bucket, self.bucket_expires]

    @classmethod
    def from_json(cls, item: list[Any]) -> HeldCounter:
        name, kind, hold, amount, hold_expires, bucket, bucket_expires = item
        return cls(str(name), str(kind), None if hold is None else int(hold), int(amount), float(hold_expires),
                   int(bucket), float(bucket_expires))  # fmt: skip

    def actual(self, cost_nano: int, tokens: int) -> int:
        return cost_nano if self.kind == "usd" else tokens if self.kind in ("tokens", "tpm") else 0


@dataclass(frozen=True, slots=True)
class Reservation:
    """A request's reservation: its counters, its worst case and what a ledger row needs to say who."""

    request_id: str
    counters: tuple[HeldCounter, ...]
    cost_nano: int  # the worst case reserved, nano-USD (also when no usd limit applies)
    tokens: int
    row: Mapping[str, Any]  # ledger row fields known at admission (margin.ledger.unreconciled)

    def to_json(self) -> str:
        body = {
            "request_id": self.request_id,
            "counters": [c.as_json() for c in self.counters],
            "cost_nano": self.cost_nano,
            "tokens": self.tokens,
            "row": dict(self.row),
        }
        return json.dumps(body, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Reservation:
        body = json.loads(text)
        return cls(
            request_id=str(body["request_id"]),
            counters=tuple(HeldCounter.from_json(item) for item in body["counters"]),
            cost_nano=int(body["cost_nano"]),
            tokens=int(body["tokens"]),
            row=dict(body["row"]),
        )


def _releases(counters: tuple[HeldCounter, ...]) -> list[Adjust]:
    return [
        Adjust(c.name + HOLD_SUFFIX, c.hold, -c.amount, c.hold_expires)
        for c in counters
        if c.hold is not None and c.amount > 0
    ]


def spend_plan(counters: tuple[HeldCounter, ...], cost_nano: int, tokens: int) -> list[Adjust]:
    plan = []
    for c in counters:
        actual = c.actual(cost_nano, tokens)
        if actual > 0:
            plan.append(Adjust(c.name, c.bucket, actual, c.bucket_expires))
    return plan


def settle_plan(counters: tuple[HeldCounter, ...], cost_nano: int, tokens: int) -> list[Adjust]:
    return _releases(counters) + spend_plan(counters, cost_nano, tokens)


def late_plans(counters: tuple[HeldCounter, ...], cost_nano: int, tokens: int) -> dict[IntentState, list[Adjust]]:
    """The plans of a settle that knows the actual amounts, by the state it may find the intent in."""
    return {
        "open": settle_plan(counters, cost_nano, tokens),
        "swept": correction_plan(counters, cost_nano, tokens),
        "released": spend_plan(counters, cost_nano, tokens),
    }


def spent_plan(counters: tuple[HeldCounter, ...]) -> list[Adjust]:
    plan = _releases(counters)
    plan.extend(Adjust(c.name, c.bucket, c.amount, c.bucket_expires) for c in counters
                if c.kind in SPENT_KINDS and c.amount > 0)  # fmt: skip
    return plan


def release_plan(counters: tuple[HeldCounter, ...]) -> list[Adjust]:
    return _releases(counters)


def correction_plan(counters: tuple[HeldCounter, ...], cost_nano: int, tokens: int) -> list[Adjust]:
    plan = []
    for c in counters:
        if c.kind in SPENT_KINDS:
            delta = c.actual(cost_nano, tokens) - c.amount
            if delta:
                plan.append(Adjust(c.name, c.bucket, delta, c.bucket_expires))
    return plan
