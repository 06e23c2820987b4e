"""Budgets and rate limits: reservation of the worst-case cost before a call, settlement after it,
windows, alerts and the upkeep that reconciles counters with the ledger (stage ② of the pipeline)."""
