"""What the rest of margin may ask of a store. Backends live in `storage/<backend>/` and are the only
modules that import a database driver; everything else sees these protocols and value objects.

The ledger store is deliberately narrow: append attempt rows (idempotently), read aggregates for
reports, page through rows and correct their costs for `margin reprice`, keep an audit trail, prune.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal, Protocol, runtime_checkable

from margin.storage.ledger_row import LedgerRow
from margin.storage.request_log import RequestQuery

GroupBy = Literal["key", "team", "tag", "model", "tier", "deployment"]
GROUP_BY_CHOICES: tuple[GroupBy, ...] = ("key", "team", "tag", "model", "tier", "deployment")


class StorageError(Exception):
    """A store could not do what was asked (unreachable, timed out, rejected the statement).

    Backends translate their driver's errors into this class, so callers such as the ledger writer
    catch one type without importing a driver.
    """


@dataclass(frozen=True, slots=True)
class ReportRow:
    """Aggregates of one group (one key, team, tag, ...) over a report window, read from rollups.

    `requests` counts rows with attempt_index 0 (one per request, cache hits included);
    `successful` counts final rows with status ok. Histograms map a latency bin (see
    `margin.storage.rollups.latency_bin`) to the number of attempts that fell in it. `cache` counts
    requests by what their cache lookup found (`rollups.CACHE_COLUMNS`: hits by kind, misses,
    bypasses by reason); `generated_tokens` over `generation_us` is the measured generation rate.
    """

    group: str
    attempts: int
    requests: int
    successful: int
    error_attempts: int
    cache_hits: int
    price_unknown: int
    tokens: Mapping[str, int]
    cost_total: Decimal
    saved_cost: Decimal
    latency_histogram: Mapping[int, int] = field(default_factory=dict)
    ttft_histogram: Mapping[int, int] = field(default_factory=dict)
    routing_savings: Decimal = Decimal(0)  # all-premium counterfactual - spend, of tiered routes
    rejected: int = 0  # answers a cascade checked and did not send (it escalated)
    refused_budget: int = 0  # requests a budget refused (402): in `requests`, never in `attempts`
    refused_rate_limit: int = 0  # requests a rate or concurrency limit refused (429)
    cache: Mapping[str, int] = field(default_factory=dict)
    generated_tokens: int = 0  # output tokens of attempts that measured a generation rate
    generation_us: int = 0  # the microseconds those attempts spent generating them


@dataclass(frozen=True, slots=True)
class Timings:
    """One group's timing cells summed over a window or one bucket (`margin.storage.timing`)."""

    latency: Mapping[int, int]
    ttft: Mapping[int, int]
    generated_tokens: int = 0
    generation_us: int = 0

    @property
    def tokens_per_s(self) -> float | None:
        """Output tokens over the time spent generating them (rows that measured it)."""
        return self.generated_tokens / (self.generation_us / 1e6) if self.generation_us > 0 else None


@dataclass(frozen=True, slots=True)
class BucketRow:
    """One group's aggregates over one rollup bucket, [start, start + period_s): one point of a time
    series. `row` carries no histograms (a series is for volumes and money, not percentiles)."""

    start: int  # UTC epoch seconds, a multiple of period_s
    period_s: int
    row: ReportRow


@dataclass(frozen=True, slots=True)
class CostChange:
    """New costs for one stored attempt (from `margin reprice`). `costs` maps each COST_COLUMNS
    name to its amount; the store derives the rollup delta from the stored total."""

    attempt_id: str
    costs: Mapping[str, Decimal]
    cost_total: Decimal
    price_version: str
    price_basis: str
    price_unknown: bool
    routing_savings: Decimal | None = None  # None: unchanged (not a tiered route's row)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """Who changed stored money, when, and by how much."""

    action: str  # e.g. "reprice"
    actor: str
    at: float  # UTC epoch seconds
    since: float
    until: float
    rows_scanned: int
    rows_changed: int
    old_total: Decimal
    new_total: Decimal
    price_versions: Mapping[str, Sequence[str]]  # {"old": [...], "new": [...], "catalog": [...]}
    detail: Mapping[str, str] = field(default_factory=dict)


@runtime_checkable
class LedgerStore(Protocol):
    """Durable ledger rows plus per-minute/hour/day rollups, kept in step in one transaction."""

    async def migrate(self) -> list[str]:
        """Apply pending named migrations in order; returns the names applied (none when current)."""
        ...

    async def write(self, rows: Sequence[LedgerRow]) -> None:
        """Insert rows in one transaction and add them to the rollups. Idempotent by attempt_id:
        a row already stored is skipped, and only rows actually inserted reach the rollups."""
        ...

    async def count(self) -> int:
        """Number of raw attempt rows stored."""
        ...

    def query_rows(self, since: float, until: float, *, page_size: int = 500) -> AsyncIterator[LedgerRow]:
        """Rows with since <= ts < until, in (ts, attempt_id) order, fetched a page at a time."""
        ...

    async def update_costs(self, changes: Sequence[CostChange]) -> None:
        """Replace the costs of stored rows and move their rollups by the difference, atomically."""
        ...

    async def spend_report(
        self, since: float, until: float, group_by: GroupBy, *, histograms: bool = True
    ) -> list[ReportRow]:
        """Aggregates per group for since <= ts < until, widened to whole minutes (since rounds down,
        until up), from rollups only: UTC day buckets where the window covers whole days, then hours,
        then minutes. `histograms=False` leaves the latency and TTFT histograms empty (and unread)."""
        ...

    async def bucket_report(self, since: float, until: float, group_by: GroupBy, period_s: int) -> list[BucketRow]:
        """The stored rollup cells of one period (60, 3600 or 86400 s) whose bucket starts in
        [since, until), per bucket and group, in (start, group) order. Hour and day cells outlive
        `prune`; minute cells do not. Raises ValueError for any other period."""
        ...

    async def bucket_spend(
        self,
        since: float,
        until: float,
        group_by: GroupBy,
        period_s: int,
        labels: Mapping[str, str],
        included: Sequence[str] | None = None,
    ) -> list[tuple[int, str | None, Decimal]]:
        """Spend per bucket (as `bucket_report` chooses them) summed in the store per label: a cell whose
        value is a key of `labels` counts under its label, any other under None; with `included`, only
        the cells whose value is in `labels` or `included` count. (bucket_start, label, spend) in bucket
        order: a time series of a few lines costs one range scan and returns a few rows per bucket."""
        ...

    async def bucket_percentiles(
        self, since: float, until: float, group_by: GroupBy, period_s: int, q: float
    ) -> list[tuple[int, str, str, int]]:
        """Per bucket (as `bucket_report` chooses them), group and metric ("latency" | "ttft"), the
        histogram bin of the nearest-rank q-quantile (`rollups.percentile`'s, computed by the store):
        (bucket_start, group, metric, bin), one row per series point."""
        ...

    async def bucket_timings(
        self, since: float, until: float, group_by: GroupBy, period_s: int
    ) -> list[tuple[int, str, Timings]]:
        """Per bucket (as `bucket_report` chooses them) and group, its timings: latency and TTFT
        histograms and the generation rate's sums; (bucket_start, group, timings) in that order, one
        stored cell each."""
        ...

    async def request_rows(self, request_id: str) -> list[LedgerRow]:
        """One request's rows in attempt order; empty when no row has that request id."""
        ...

    async def list_requests(self, query: RequestQuery) -> list[LedgerRow]:
        """Each matching request's last row, newest first (`margin.storage.request_log`)."""
        ...

    async def record_audit(self, entry: AuditEntry) -> None: ...

    async def audit_log(self, limit: int = 100) -> list[AuditEntry]:
        """The most recent audit entries, newest first."""
        ...

    async def prune(self, before: float, *, batch_size: int = 5000) -> int:
        """Delete raw rows and minute rollups older than `before`, one batch per transaction so
        writers interleave; hour and day rollups are kept. Returns the raw rows deleted."""
        ...

    async def health(self) -> bool:
        """True when the store answers a trivial query now; never raises."""
        ...

    async def close(self) -> None: ...


# --- virtual keys (stage ①) -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One virtual key. Only the SHA-256 of the secret is stored; `prefix` is what lists may show.

    Rotation keeps `key_id` (so budgets and the ledger follow the key) and gives it a new secret;
    the previous secret's hash stays valid until `previous_expires_at` (a grace period, 0 = none).
    `policy` holds the key's own limits as JSON-able data (budget, rates), validated by
    `margin.identity`; the store keeps it opaque."""

    key_id: str
    secret_hash: str
    prefix: str
    name: str
    org: str
    team: str
    user: str
    tags: tuple[str, ...] = ()
    endpoint_class: str = "interactive"
    allowed_models: tuple[str, ...] = ()
    allowed_tiers: tuple[int, ...] = ()
    policy: Mapping[str, object] = field(default_factory=dict)
    created_at: float = 0.0
    revoked_at: float | None = None
    rotated_at: float | None = None
    previous_hash: str | None = None
    previous_expires_at: float | None = None


@runtime_checkable
class KeyStore(Protocol):
    async def migrate(self) -> list[str]: ...

    async def insert_key(self, record: KeyRecord) -> None:
        """Store a new key; StorageError when its key_id or hash already exists."""
        ...

    async def find_key(self, secret_hash: str, now: float) -> KeyRecord | None:
        """The key whose current secret (or previous secret, within its grace period) has this hash.
        Revoked keys are returned too: the caller tells "revoked" from "unknown"."""
        ...

    async def get_key(self, key_id: str) -> KeyRecord | None: ...

    async def list_keys(self) -> list[KeyRecord]:
        """All keys, revoked ones included, oldest first."""
        ...

    async def count_keys(self) -> int:
        """Keys ever created (revoked included): the embedded default requires keys once this is > 0."""
        ...

    async def rotate_key(
        self, key_id: str, *, secret_hash: str, prefix: str, now: float, grace_s: float
    ) -> KeyRecord | None:
        """Give a live key a new secret in one transaction; None when unknown or revoked."""
        ...

    async def revoke_key(self, key_id: str, now: float) -> KeyRecord | None:
        """Revoke (idempotent: the first revocation time is kept); None when unknown."""
        ...

    async def close(self) -> None: ...


# --- counters (stage ②: budgets, rate limits, concurrency) -----------------------------------------

HOLD_SUFFIX = "#hold"  # held (reserved, not yet settled) amounts live under NAME#hold, by lease slot


@dataclass(frozen=True, slots=True)
class Charge:
    """One limit to check and charge, atomically with the other charges of the same request.

    A counter NAME has integer buckets: spent amounts in NAME/bucket, held amounts in NAME#hold/slot.
    The charge passes when sum(NAME, first..last) + sum(NAME#hold, hold-1..hold) + amount <= limit
    (an amount of 0 always passes). On success `amount` is added to NAME#hold/hold, or straight to
    NAME/last when `hold` is None (requests per minute: nothing to settle). Holds live in lease slots
    so that a reservation whose settle never comes (a crashed replica) stops counting after two slots."""

    name: str
    first: int
    last: int
    hold: int | None
    amount: int
    limit: int
    expires_at: float  # UTC epoch seconds after which the rows this charge touches may be dropped
    # The counter must have been synced (see Counters.sync) in this window: a store that can lose its
    # data (Redis restarted empty) answers `unsynced` for a charge whose sync marker is missing.
    sync: bool = False


@dataclass(frozen=True, slots=True)
class Adjust:
    """Add `delta` (may be negative) to NAME/bucket; the result is clamped at zero."""

    name: str
    bucket: int
    delta: int
    expires_at: float


@dataclass(frozen=True, slots=True)
class Verdict:
    """`failed` is the index of the first charge that did not fit (None: all applied) and `used` what
    its counter held before this request."""

    failed: int | None = None
    used: int = 0
    unsynced: int | None = None  # index of a charge to sync before reserving again (nothing applied)

    @property
    def admitted(self) -> bool:
        return self.failed is None


@runtime_checkable
class Counters(Protocol):
    """Shared integer counters. `reserve` is one atomic check-and-add over all its charges (all or
    nothing) on every backend; it raises StorageError when the store cannot answer."""

    async def migrate(self) -> list[str]: ...

    async def reserve(self, charges: Sequence[Charge]) -> Verdict: ...

    async def adjust(self, adjustments: Sequence[Adjust]) -> None: ...

    async def read(self, name: str, first: int, last: int) -> int:
        """sum(NAME, first..last), for status pages and reconciliation (not atomic with writes)."""
        ...

    async def sync(self, name: str, first: int, last: int, floor: int, expires_at: float) -> None:
        """Atomically, unless NAME was already synced for bucket `last`: raise sum(NAME, first..last)
        to at least `floor` (the ledger's figure) and mark it synced. Stores that never lose data
        never answer `unsynced`; for them this only raises the sum."""
        ...

    async def prune(self, now: float) -> int:
        """Drop rows whose expires_at has passed (Redis expires keys itself); returns rows dropped."""
        ...

    async def health(self) -> bool: ...

    async def close(self) -> None: ...


# --- durable reservations (issue 15, 4) ---------------------------------------------------------

IntentState = Literal["open", "swept", "released", "settled"]


@dataclass(frozen=True, slots=True)
class Intent:
    """A reservation's durable record in the counter store: written with the reservation, atomically,
    so a reservation never exists without it. Its `payload` (JSON, see margin.budgets.intents) says
    what was reserved and for whom, so that any replica can settle it when its own replica cannot:

    open    -> settled  the replica that made it settled it (the normal end of every request);
    open    -> swept    its replica died, or its lease ended without a settle, after marking an
                        attempt: settled as spent at the reserved amount by whoever found it;
    open    -> released the same, but no attempt was marked: nothing went upstream (a mark is
                        written before its attempt goes), so the holds are released;
    swept   -> settled  the outcome became known after all (a late settle, a journal replay): the
                        difference between the actual and the reserved amounts is applied;
    released -> settled a replica that was only stalled went upstream after all: its actual spend
                        is applied.
    """

    id: str
    owner: str  # the replica that holds it (its heartbeat says whether it is alive)
    sweep_at: float  # UTC epoch: its lease ends; from then on any replica may sweep it
    expires_at: float  # UTC epoch: the store may forget it (long after sweep_at)
    payload: str


@dataclass(frozen=True, slots=True)
class Orphan:
    """An open intent whose replica is dead or whose lease has ended, with the attempt marks its
    replica made (JSON, one per upstream attempt started, before the attempt went upstream)."""

    intent: Intent
    attempts: tuple[str, ...]


@runtime_checkable
class IntentCounters(Protocol):
    """Counters that keep reservation intents (stores that outlive the process: SQLite, PostgreSQL,
    Redis). A store without them settles with plain `adjust` and loses nothing by it: its counters
    die with the process."""

    async def reserve_intent(self, charges: Sequence[Charge], intent: Intent) -> Verdict:
        """`reserve`, and when it admits, record `intent` as open in the same atomic step."""
        ...

    async def finish(
        self, intent: str, owner: str, plans: Mapping[IntentState, Sequence[Adjust]], to: IntentState, keep_until: float
    ) -> IntentState | None:
        """Atomically: read the intent's state; if `plans` has an entry for it, apply those adjustments
        and move the intent to `to` (kept until `keep_until`). Returns the state found (None: the
        store has no such intent: never recorded, forgotten, or lost with the store's data)."""
        ...


@runtime_checkable
class SharedIntents(Protocol):
    """Intents that every replica can see (Redis): how a surviving replica learns of a dead one's
    reservations. Each replica renews a heartbeat; an open intent whose owner's heartbeat is gone, or
    whose lease has ended, is an orphan."""

    async def mark_attempt(self, intent: str, index: int, mark: str) -> None: ...

    async def heartbeat(self, owner: str, ttl_s: float) -> None: ...

    async def orphans(self, now: float, limit: int) -> list[Orphan]: ...
