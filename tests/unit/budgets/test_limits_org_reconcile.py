"""Org and user budget counters lost with Redis are rebuilt from the ledger spend of their keys."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

from tests.support.ledger_rows import make_row

from margin.budgets.upkeep import Upkeep
from margin.storage.memory.keys import MemoryKeyStore
from margin.storage.protocols import KeyRecord
from margin.storage.sqlite import SqliteLedgerStore

NANO = 10**9


def key(key_id: str, org: str, user: str) -> KeyRecord:
    return KeyRecord(key_id=key_id, secret_hash=key_id, prefix=key_id, name=key_id, org=org, team="t", user=user)


async def test_org_and_user_spend_is_the_spend_of_their_keys(tmp_path: Path) -> None:
    now = time.time()
    ledger = SqliteLedgerStore(str(tmp_path / "ledger.db"))
    await ledger.migrate()
    costs = {"k1": "0.40", "k2": "0.25", "k3": "0.10"}
    await ledger.write(
        [make_row(i, ts=now - 60, key_id=k, cost_total=Decimal(c)) for i, (k, c) in enumerate(costs.items())]
    )
    keys = MemoryKeyStore()
    for record in (key("k1", "acme", "ann"), key("k2", "acme", "bob"), key("k3", "other", "ann")):
        await keys.insert_key(record)
    limiter = SimpleNamespace(clock=lambda: now, on_settled=[], on_refused=[], ledger_amount=None)
    upkeep = Upkeep(limiter, SimpleNamespace(), ledger, keys)  # type: ignore[arg-type]
    span = SimpleNamespace(start=now - 3600)

    def scope(name: str) -> SimpleNamespace:
        return SimpleNamespace(scope=name, rule=SimpleNamespace(kind="usd"))

    assert await upkeep.ledger_amount(scope("org:acme"), span) == Decimal("0.65") * NANO  # type: ignore[arg-type]
    assert await upkeep.ledger_amount(scope("user:ann"), span) == Decimal("0.50") * NANO  # type: ignore[arg-type]
    assert await upkeep.ledger_amount(scope("org:nobody"), span) == 0  # type: ignore[arg-type]
    await ledger.close()
