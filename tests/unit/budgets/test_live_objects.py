"""Teams, budgets and rate limits changed while requests are in flight (margin.budgets.live), on a
real SQLite object store and real SQLite counters: a budget change keeps the counter, so holds of
requests in flight still count against the new limit and settle where they were taken; an object
this version cannot read keeps the previous rules; team members are placed in their team."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from margin import errors
from margin.budgets.admission import Limiter
from margin.budgets.estimate import Demand
from margin.budgets.live import LiveObjects
from margin.budgets.object_service import ObjectService
from margin.budgets.objects import config_objects
from margin.budgets.rules import NANO, RuleBook
from margin.budgets.windows import Lease
from margin.cli.objects import validate_spec
from margin.config.limits import TeamConfig
from margin.storage import open_database_stores
from margin.storage.memory import MemoryCounters
from margin.storage.team_stores import open_object_store
from margin.storage.teams import Change, StoredObject
from margin.types import Principal

NOW = 1_800_000_000.0
WHO = Principal(key_id="k1", team="t1")


def usd(amount: str) -> Demand:
    return Demand(cost_nano=int(Decimal(amount) * NANO), tokens=10)


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[tuple[LiveObjects, ObjectService, Limiter]]:
    url = f"sqlite:///{tmp_path}/margin.db"
    keys, counters = open_database_stores(url, tmp_path)
    await counters.migrate()
    limiter = Limiter(RuleBook([]), counters, lease=Lease(360), clock=lambda: NOW, fallback=MemoryCounters())
    declared = config_objects([TeamConfig(name="ops", users=["ana"])], [], [])
    live = LiveObjects(open_object_store(url, tmp_path), limiter, ZoneInfo("UTC"), declared, every_s=60)
    await live.start()
    service = ObjectService(live.store, validate_spec, config=lambda: live.config, changed=live.refresh)
    yield live, service, limiter
    await limiter.drain()
    await live.stop()
    await counters.close()
    await keys.close()


async def admit(limiter: Limiter, demand: Demand) -> Any:
    return await limiter.reserve(WHO, limiter.applicable(WHO, None, ()), demand)


async def test_a_budget_change_keeps_the_holds_of_requests_in_flight(
    parts: tuple[LiveObjects, ObjectService, Limiter],
) -> None:
    _, service, limiter = parts
    budget = await service.create("budget", {"scope": "team:t1", "limit_usd": "1", "window": "day"}, "test")
    in_flight = await admit(limiter, usd("0.6"))  # holds $0.60 while it runs
    await service.update("budget", budget.object_id, {"limit_usd": "0.8"}, "test")
    with pytest.raises(errors.BudgetExceeded):
        await admit(limiter, usd("0.3"))  # $0.60 held + $0.30 > the new $0.80: the hold still counts
    limiter.settle(in_flight, cost_nano=int(Decimal("0.2") * NANO), tokens=10)
    await limiter.drain()  # settled on the same counter: $0.20 spent, nothing held
    second = await admit(limiter, usd("0.3"))
    limiter.settle(second, cost_nano=int(Decimal("0.3") * NANO), tokens=10)
    await limiter.drain()
    with pytest.raises(errors.BudgetExceeded):
        await admit(limiter, usd("0.31"))  # $0.50 spent: $0.30 left
    await service.delete("budget", budget.object_id, "test")
    assert limiter.applicable(WHO, None, ()) == []  # deleted: nothing limits the next request


async def test_an_unreadable_stored_object_keeps_the_previous_rules(
    parts: tuple[LiveObjects, ObjectService, Limiter], caplog: pytest.LogCaptureFixture
) -> None:
    live, service, limiter = parts
    await service.create("limit", {"scope": "team:t1", "requests_per_minute": 1}, "test")
    before = limiter.rules
    bad = StoredObject("budget", "bud_future", "x", {"scope": "team:t1", "limit_gold": 3}, NOW, NOW)
    await live.store.create(bad, Change(NOW, "test", "budget", "bud_future", "create", None, dict(bad.body)))
    await live.refresh()
    assert limiter.rules is before and "previous ones stay" in caplog.text
    await admit(limiter, usd("0"))
    with pytest.raises(errors.RateLimited):
        await admit(limiter, usd("0"))  # the rate limit still applies


async def test_members_are_placed_in_their_team(parts: tuple[LiveObjects, ObjectService, Limiter]) -> None:
    live, service, _ = parts
    await service.create("team", {"name": "search", "keys": ["k9"], "users": ["bo"]}, "test")
    assert live.place(Principal(key_id="k9", team="default")).team == "search"
    assert live.place(Principal(key_id="k2", user="bo", team="x")).team == "search"
    assert live.place(Principal(key_id="k3", user="ana")).team == "ops"  # the config file's team
    assert live.place(Principal(key_id="k4", user="cy", team="t1")).team == "t1"  # not a member
    with pytest.raises(errors.Conflict, match="'ops'"):
        await service.create("team", {"name": "other", "users": ["ana"]}, "test")
