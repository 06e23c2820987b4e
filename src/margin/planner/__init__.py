"""Capacity-aware cost planner: when does self-hosting beat the API? Pure functions; no server imports."""

from margin.planner.catalog import Catalog, load_catalog
from margin.planner.ledger_input import HourlyAggregate, LedgerSummary, profile_from_ledger, summarize_ledger
from margin.planner.plan import Plan, plan
from margin.planner.profile import Profile, load_profile

__all__ = [
    "Catalog",
    "HourlyAggregate",
    "LedgerSummary",
    "Plan",
    "Profile",
    "load_catalog",
    "load_profile",
    "plan",
    "profile_from_ledger",
    "summarize_ledger",
]
