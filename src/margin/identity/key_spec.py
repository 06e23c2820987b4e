"""What a key is created with (`POST /admin/keys`, `margin keys create`) and its own limits."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Literal

from pydantic import AliasChoices, Field, model_validator

from margin.config.base import Strict

_NAME = r"^[A-Za-z0-9_.:@/+-]{1,128}$"

log = logging.getLogger(__name__)


class KeyBudget(Strict):
    """The key's own budget: the same fields as a `budgets:` entry, scope implied (this key)."""

    limit_usd: Decimal | None = Field(None, ge=0)
    limit_tokens: int | None = Field(None, ge=0)
    window: Literal["day", "week", "month", "rolling"] = "month"
    hours: int | None = Field(None, ge=1, le=24 * 366)
    thresholds: list[float] = Field(default_factory=lambda: [0.5, 0.8, 1.0])

    @model_validator(mode="after")
    def _shape(self) -> KeyBudget:
        if (self.limit_usd is None) == (self.limit_tokens is None):
            raise ValueError("budget: give exactly one of limit_usd or limit_tokens")
        if (self.window == "rolling") != (self.hours is not None):
            raise ValueError("budget: `hours` goes with window: rolling, and only with it")
        if any(not 0 < t <= 1 for t in self.thresholds):
            raise ValueError("budget: thresholds are fractions in (0, 1]")
        return self


class KeyPolicy(Strict):
    """Limits attached to one key (stored with it, opaque to the store)."""

    budget: KeyBudget | None = None
    requests_per_minute: int | None = Field(None, ge=0)
    tokens_per_minute: int | None = Field(None, ge=0)
    concurrency: int | None = Field(None, ge=0)

    @property
    def empty(self) -> bool:
        return (
            self.budget is None
            and self.requests_per_minute is None
            and self.tokens_per_minute is None
            and self.concurrency is None
        )


class KeySpec(KeyPolicy):
    """A key to create: where it sits (org > team > user), its tags and class, what it may use."""

    name: str = Field("", max_length=200)
    org: str = Field("default", pattern=_NAME)
    team: str = Field("default", pattern=_NAME)
    user: str = Field("default", pattern=_NAME)
    tags: list[str] = Field(default_factory=list, description="e.g. feature:search, env:prod")
    endpoint_class: Literal["interactive", "batch"] = "interactive"
    allowed_models: list[str] = Field(default_factory=list, description="model groups; empty = all")
    allowed_cost_ranks: list[int] = Field(
        default_factory=list,
        # `allowed_tiers` is the spelling before 0.2, accepted (with a logged warning) for one release.
        validation_alias=AliasChoices("allowed_cost_ranks", "allowed_tiers"),
        description="deployment cost_ranks it may use; empty = all",
    )

    @model_validator(mode="before")
    @classmethod
    def _one_spelling(cls, data: object) -> object:
        if isinstance(data, dict) and "allowed_tiers" in data:
            if "allowed_cost_ranks" in data:
                raise ValueError("give allowed_cost_ranks (allowed_tiers is its deprecated spelling), not both")
            log.warning("key spec: allowed_tiers is deprecated (until the next release): use allowed_cost_ranks")
        return data

    def policy(self) -> KeyPolicy:
        return KeyPolicy(
            budget=self.budget,
            requests_per_minute=self.requests_per_minute,
            tokens_per_minute=self.tokens_per_minute,
            concurrency=self.concurrency,
        )
