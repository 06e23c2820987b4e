"""Batches as the database keeps them (docs/batch.md): uploaded files, batches, where each line sits
in its input file, each finished line's result, and the chunk leases replicas run lines under.
SQLite for one process, PostgreSQL shared by replicas; both behind `BatchStore`.

Exactly once per line: a line's result is written by `finish_line`, which only writes a line that
has none yet, in the same transaction that adds it to the batch's counts. Workers run lines of a
chunk they lease; a lease that is not renewed expires, and another worker takes the chunk and runs
its unfinished lines (a worker killed mid-line leaves that line unfinished, never half-counted).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal, Protocol

BatchStatus = Literal[
    "validating", "failed", "in_progress", "finalizing", "completed", "expired", "cancelling", "cancelled"
]
FINAL_STATUSES: frozenset[str] = frozenset({"failed", "completed", "expired", "cancelled"})
# Statuses in which lines may still be started (`cancelling` runs none, but its leases drain).
RUNNING_STATUSES: frozenset[str] = frozenset({"in_progress"})
Ending = Literal["completed", "expired", "cancelled"]
LineOutcome = Literal["completed", "failed"]
# Batch-level fields `update_batch` may change (timestamps, files, errors, flags).
UPDATABLE = frozenset(
    {
        "status", "ending", "in_progress_at", "finalizing_at", "completed_at", "failed_at", "expired_at",
        "cancelling_at", "cancelled_at", "output_file_id", "error_file_id", "errors", "total", "paused",
        "paused_until", "native_deployment", "native_id", "native_hold",
    }
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class FileRecord:
    file_id: str
    owner: str  # the key id that uploaded it (or the batch's, for output files)
    purpose: str  # batch | batch_output
    filename: str
    bytes: int
    lines: int
    created_at: float
    blob: str  # its key in the blob store


@dataclass(frozen=True, slots=True)
class BatchRecord:
    batch_id: str
    owner: str  # the creator's key id
    api: Literal["openai", "anthropic"]
    endpoint: str  # /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/messages
    input_file_id: str
    completion_window: str
    status: BatchStatus
    created_at: float
    expires_at: float
    principal: dict[str, Any]  # the creator's principal when it was created (lines run as it)
    metadata: dict[str, str] | None = None
    ending: Ending | None = None  # set when it stops starting lines: what it will end as
    in_progress_at: float | None = None
    finalizing_at: float | None = None
    completed_at: float | None = None
    failed_at: float | None = None
    expired_at: float | None = None
    cancelling_at: float | None = None
    cancelled_at: float | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: list[dict[str, Any]] | None = None  # validation errors of a failed batch
    total: int = 0
    completed: int = 0
    failed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: Decimal = Decimal(0)  # the sum of its finished lines' costs, exact
    paused: str | None = None  # why no line starts until `paused_until` (budget), None when it runs
    paused_until: float | None = None
    native_deployment: str | None = None  # `native`: the deployment whose provider's Batch API runs it
    native_id: str | None = None  # that provider's batch id, once submitted
    # `native`: the budget reservation of its worst case (margin.batch.native_hold), settled once
    native_hold: dict[str, Any] | None = None

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES


@dataclass(frozen=True, slots=True)
class LineSpec:
    """Where one request of a batch sits in its input file (bytes, the newline excluded)."""

    line_no: int  # 1-based, as errors name lines
    offset: int
    length: int
    custom_id: str


@dataclass(frozen=True, slots=True)
class LineResult:
    """A line that ran: the output line delivered for it, written once."""

    line_no: int
    outcome: LineOutcome
    result: str  # the output (or error) file's JSON line for it
    request_id: str
    finished_at: float
    input_tokens: int = 0
    output_tokens: int = 0
    cost: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class LineRow:
    """A line as the finaliser reads it: its spec and, when it ran, its result."""

    spec: LineSpec
    outcome: LineOutcome | None
    result: str | None


@dataclass(frozen=True, slots=True)
class ChunkLease:
    batch_id: str
    chunk_no: int
    owner: str
    until: float


@dataclass(frozen=True, slots=True)
class BatchPage:
    """A page of a listing and whether more follow."""

    items: list[Any] = field(default_factory=list)
    has_more: bool = False


class BatchStore(Protocol):
    async def migrate(self) -> list[str]: ...

    # --- files ---------------------------------------------------------------------------------------
    async def add_file(self, record: FileRecord) -> None:
        """Insert a file; a file with the same id already there is left as it is (a retried finalisation)."""

    async def get_file(self, file_id: str) -> FileRecord | None: ...

    async def list_files(
        self, owner: str | None, *, purpose: str | None, after: str | None, limit: int, descending: bool
    ) -> BatchPage:
        """Files by creation time (`owner` None: everyone's), the page after file `after`."""

    async def delete_file(self, file_id: str) -> bool: ...

    # --- batches -------------------------------------------------------------------------------------
    async def add_batch(self, record: BatchRecord) -> None: ...

    async def get_batch(self, batch_id: str) -> BatchRecord | None: ...

    async def list_batches(
        self, owner: str | None, *, after: str | None, limit: int, api: str | None = None
    ) -> BatchPage:
        """Batches (of `api`'s shape, or all), newest first, the page after batch `after`."""

    async def update_batch(self, batch_id: str, expected: Collection[str], changes: dict[str, Any]) -> bool:
        """Apply `changes` (names in UPDATABLE) if the batch's status is one of `expected`."""

    async def add_lines(self, batch_id: str, lines: Sequence[LineSpec]) -> None:
        """Record where lines sit (idempotent: a validation run again after a crash adds nothing twice)."""

    async def open_batch(self, batch_id: str, *, chunk_lines: int, now: float) -> bool:
        """validating -> in_progress: its lines are cut into chunks of `chunk_lines` for leasing."""

    # --- running lines -------------------------------------------------------------------------------
    async def claim_chunk(self, owner: str, *, now: float, lease_s: float) -> ChunkLease | None:
        """Lease the oldest chunk with unfinished lines of a running, unexpired, unpaused batch whose
        lease is free or expired; None when there is none."""

    async def renew_chunk(self, lease: ChunkLease, until: float) -> bool:
        """Extend `lease`; False when it was lost (it expired and another worker took the chunk)."""

    async def release_chunk(self, lease: ChunkLease, *, done: bool) -> None:
        """Give the chunk back: `done` when every line in it has a result."""

    async def pending_lines(self, batch_id: str, chunk_no: int) -> list[LineSpec]:
        """The chunk's lines without a result, in line order."""

    async def finish_line(self, batch_id: str, result: LineResult) -> bool:
        """Write the line's result and add it to the batch's counts, unless it has one already or the
        batch is final; True when this call wrote it."""

    async def live_leases(self, batch_id: str, now: float) -> int:
        """Chunks of the batch leased by a worker now."""

    async def unfinished_chunks(self, batch_id: str) -> int: ...

    async def line_rows(self, batch_id: str, *, after_line: int, limit: int) -> list[LineRow]:
        """Lines in order from `after_line` + 1, with their results (the finaliser streams these)."""

    async def line_results(self, batch_id: str, line_nos: Sequence[int]) -> list[LineRow]: ...

    # --- batch-level work (validation, finalisation) ----------------------------------------------
    async def claim_batch(self, owner: str, *, now: float, lease_s: float) -> BatchRecord | None:
        """Lease a batch that needs batch-level work: `validating`, `finalizing`, `cancelling`, or
        `in_progress` that has expired or has no unfinished chunk; None when there is none."""

    async def renew_batch(self, batch_id: str, owner: str, until: float) -> bool:
        """Keep (or, to look again later, hold) the batch's lease until `until`; False when lost."""

    async def release_batch(self, batch_id: str, owner: str) -> None: ...

    async def release_owners(self, owners: Collection[str]) -> int:
        """Drop every lease (chunk and batch) held by `owners` (workers known to be dead)."""

    async def lease_owners(self, now: float) -> list[str]:
        """The owners of leases that have not expired or been released."""

    async def close(self) -> None: ...


# `native` batches (margin.batch.native): what a provider's own Batch API reports, as the provider
# clients (margin.providers.batch_api) hand it to the batch tier.
@dataclass(frozen=True, slots=True)
class NativeProgress:
    ended: bool  # the provider will run no more lines (completed, cancelled, expired, failed)
    status: str  # the provider's own word for it
    done: int  # lines the provider has answered (successes and errors)
    total: int


@dataclass(frozen=True, slots=True)
class NativeAnswer:
    """One line as the provider answered it: a status and body, or an error when it never ran."""

    custom_id: str
    status_code: int | None  # None: the line never ran (cancelled or expired at the provider)
    body: dict[str, Any] | None
    error: dict[str, Any] | None = None  # {code, message} of a line that never ran
