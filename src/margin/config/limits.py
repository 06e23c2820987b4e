"""Configuration of stage ②: virtual-key auth, budgets, rate limits, priority classes, the counter
store and what happens when it is unreachable. Imported by `margin.config.model`, which adds these
sections to `MarginConfig`; kept apart so the one config model stays readable."""

from __future__ import annotations

import re
import zoneinfo
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from margin.config.base import EnvSecret, Strict, parse_secret

# global | org:NAME | team:NAME | user:NAME | key:KEY_ID | tag:TAG | deployment:NAME, where NAME may be
# `*`: every member of that kind gets its own counter (e.g. `team:*` = a budget per team).
SCOPE_PATTERN = re.compile(r"^(global|(org|team|user|key|tag|deployment):[^\s]+)$")
StoreFailure = Literal["fail_closed", "fail_open"]


def _check_scope(value: str) -> str:
    if not SCOPE_PATTERN.match(value):
        raise ValueError(
            f"scope {value!r}: use global, org:NAME, team:NAME, user:NAME, key:KEY_ID, tag:TAG or deployment:NAME"
        )
    return value


class BudgetConfig(Strict):
    """A hard limit on spend (USD) or tokens for one scope over a window, with soft thresholds.

    Calendar windows (day, week from Monday, month) start at midnight in `limits.timezone`;
    `rolling` covers the last `hours` hours."""

    scope: str
    limit_usd: Decimal | None = Field(None, ge=0)
    limit_tokens: int | None = Field(None, ge=0)
    window: Literal["day", "week", "month", "rolling"] = "month"
    hours: int | None = Field(None, ge=1, le=24 * 366)
    thresholds: list[float] = Field(default_factory=lambda: [0.5, 0.8, 1.0])
    on_store_failure: StoreFailure | None = None

    _scope = field_validator("scope")(_check_scope)

    @model_validator(mode="after")
    def _shape(self) -> BudgetConfig:
        if (self.limit_usd is None) == (self.limit_tokens is None):
            raise ValueError(f"budget {self.scope!r}: give exactly one of limit_usd or limit_tokens")
        if (self.window == "rolling") != (self.hours is not None):
            raise ValueError(f"budget {self.scope!r}: `hours` goes with window: rolling, and only with it")
        if any(not 0 < t <= 1 for t in self.thresholds):
            raise ValueError(f"budget {self.scope!r}: thresholds are fractions in (0, 1]")
        return self


class RateLimitConfig(Strict):
    """Requests per minute, tokens per minute (worst case reserved, settled to actual) and requests
    in flight, for one scope, shared by every replica."""

    scope: str
    requests_per_minute: int | None = Field(None, ge=0)
    tokens_per_minute: int | None = Field(None, ge=0)
    concurrency: int | None = Field(None, ge=0)
    on_store_failure: StoreFailure | None = None

    _scope = field_validator("scope")(_check_scope)

    @model_validator(mode="after")
    def _something(self) -> RateLimitConfig:
        if self.requests_per_minute is None and self.tokens_per_minute is None and self.concurrency is None:
            raise ValueError(f"rate limit {self.scope!r}: set requests_per_minute, tokens_per_minute or concurrency")
        return self


class TeamConfig(Strict):
    """A team and its members: keys (by id) and users whose requests count as this team's, whatever
    team their key was created with (docs/teams.md). Budgets and rate limits name it as `team:NAME`."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.:@+-]{1,128}$", description="a key's team name, without `/` (a URL path)")
    description: str = Field("", max_length=2000)
    keys: list[str] = Field(default_factory=list, description="key ids (key_...) that belong to this team")
    users: list[str] = Field(default_factory=list, description="user names whose keys belong to this team")


class PriorityConfig(Strict):
    """Priority classes (a key's endpoint_class). When a concurrency limit is saturated, requests wait
    up to `queue_timeout_s` for a slot and interactive waiters go first; batch requests may only
    fill `batch_share` of any concurrency limit, so interactive traffic always finds room."""

    batch_share: float = Field(0.5, gt=0, le=1)
    queue_timeout_s: float = Field(2.0, ge=0, le=600)
    poll_ms: float = Field(20.0, gt=0, le=1000, description="re-check interval across replicas while queued")


class AlertsConfig(Strict):
    """Budget threshold alerts: always logged; also POSTed as JSON to `webhook_url` (retried)."""

    webhook_url: Annotated[EnvSecret | None, Field(default=None)]
    webhook_retries: int = Field(3, ge=0, le=10)
    webhook_timeout_s: float = Field(5.0, gt=0, le=60)

    _parse_url = field_validator("webhook_url", mode="before")(parse_secret)


class LimitsConfig(Strict):
    timezone: str = Field("UTC", description="zone of calendar budget windows, e.g. Europe/Paris")
    on_budget_exceeded: Literal[402, 429] = 402
    redis_failure: StoreFailure = Field("fail_closed", description="default per-scope policy when Redis is down")
    redis_timeout_ms: float = Field(
        250.0, gt=0, le=10_000, description="longest a request waits on Redis (event-loop delay included)"
    )
    fail_open_share: float = Field(
        0.1, gt=0, le=1, description="share of each limit one replica may use on its own while Redis is down"
    )
    default_max_output_tokens: int = Field(
        4096, ge=1, description="reserved for a request that sets no max_tokens (settled to actual afterwards)"
    )
    counters: Literal["auto", "memory", "database", "redis"] = Field(
        "auto", description="auto: redis when `redis:` is set, else the database"
    )
    key_cache_s: float = Field(5.0, ge=0, le=300, description="how long a replica trusts a looked-up key")
    lease_s: float | None = Field(
        None, gt=0, description="longest a reservation is held (default: failover.deadline + 60 s)"
    )
    priority: PriorityConfig = PriorityConfig()
    alerts: AlertsConfig = AlertsConfig(webhook_url=None)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Europe/Paris)") from None
        return value


class RedisConfig(Strict):
    url: EnvSecret  # e.g. redis://127.0.0.1:6379/0, or env:MARGIN_REDIS_URL (it may carry a password)
    prefix: str = Field("margin:", description="key prefix, so several gateways can share one Redis")

    _parse_url = field_validator("url", mode="before")(parse_secret)
