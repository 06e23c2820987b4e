"""margin's own ledger as what-if traffic: each request's final ledger row, joined by request id
with the evals' production sample (redacted bodies) where the sample kept one.

Where each field comes from (docs/whatif.md, "From margin's ledger"):
  timestamp             ledger `ts` (when the final attempt started)
  tenant                margin's cache partition of the row's key, team or org (`cache.scope`)
  request.model         ledger `model_group` (the name the client asked for)
  request.messages      the production sample's `messages` (PII redacted); the ledger keeps no
                        parameters, so none are written (see `cache.exact.deterministic_only`)
  response.model        ledger `model` (the upstream model, priced from the catalog)
  response.usage        ledger usage buckets (input incl. cache reads and writes -> prompt_tokens,
                        cache reads -> cached_tokens, output + reasoning -> completion_tokens)
  response.choices      the production sample's `answer`
  margin                ledger `request_id`, `deployment`, `cost_total`, `tags`: for reference only
A request the sample did not keep has no body: it is written with `"volume_only": true` and no
messages. Such lines count for volume and current cost only: they are never cache hits, never
routed and never sampled. Requests tagged `eval` or `whatif` (margin's own measuring), failed
requests and endpoints other than chat completions and messages are left out and counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from margin.caching.keys import TenantScope, tenant_of
from margin.storage.ledger_row import LedgerRow
from margin.storage.protocols import LedgerStore
from margin.storage.request_log import MAX_PAGE, RequestQuery
from margin.storage.rollouts import RolloutStore, SampleRecord
from margin.types import Principal

ENDPOINTS = frozenset({"chat", "messages"})
OWN_TAGS = frozenset({"eval", "whatif"})


@dataclass
class LedgerImport:
    records: list[dict[str, Any]] = field(default_factory=list)
    with_body: int = 0
    volume_only: int = 0
    skipped: Counter[str] = field(default_factory=Counter)  # why -> requests left out


async def final_rows(ledger: LedgerStore, since: float, until: float) -> list[LedgerRow]:
    """Each request's final row with `since <= ts < until`, oldest first (paged newest first)."""
    rows: list[LedgerRow] = []
    before: tuple[float, str] | None = None
    while True:
        page = await ledger.list_requests(RequestQuery(since=since, before=before, limit=MAX_PAGE))
        rows.extend(r for r in page if r.ts < until)
        if len(page) < MAX_PAGE:
            return rows[::-1]
        before = (page[-1].ts, page[-1].attempt_id)


async def production_bodies(samples: RolloutStore, groups: Sequence[str], limit: int) -> dict[str, SampleRecord]:
    """The production sample of each group, by request id."""
    found: dict[str, SampleRecord] = {}
    for group in groups:
        for record in await samples.samples(group, limit=limit):
            found.setdefault(record.request_id, record)
    return found


def join(rows: Sequence[LedgerRow], bodies: dict[str, SampleRecord], scope: TenantScope = "key") -> LedgerImport:
    result = LedgerImport()
    for row in rows:
        why = _left_out(row)
        if why is not None:
            result.skipped[why] += 1
            continue
        body = bodies.get(row.request_id)
        result.records.append(_record(row, body, scope))
        if body is None:
            result.volume_only += 1
        else:
            result.with_body += 1
    return result


def _left_out(row: LedgerRow) -> str | None:
    if OWN_TAGS & set(row.tags):
        return "tagged eval or whatif"
    if row.endpoint not in ENDPOINTS:
        return f"endpoint {row.endpoint}"
    if row.status != "ok":
        return f"status {row.status}"
    return None


def _usage(row: LedgerRow) -> dict[str, Any]:
    prompt = row.input_uncached + row.input_cache_read + row.input_cache_write + row.input_audio + row.input_image
    return {
        "prompt_tokens": prompt,
        "completion_tokens": row.output + row.output_reasoning + row.output_audio,
        "prompt_tokens_details": {"cached_tokens": row.input_cache_read, "audio_tokens": row.input_audio},
        "completion_tokens_details": {"reasoning_tokens": row.output_reasoning, "audio_tokens": row.output_audio},
    }


def _record(row: LedgerRow, body: SampleRecord | None, scope: TenantScope) -> dict[str, Any]:
    principal = Principal(key_id=row.key_id, org=row.org, team=row.team, user=row.user)
    request: dict[str, Any] = {"model": row.model_group}
    response: dict[str, Any] = {"model": row.model, "usage": _usage(row)}
    record: dict[str, Any] = {"timestamp": row.ts, "tenant": tenant_of(principal, scope)}
    if body is None:
        record["volume_only"] = True
    else:
        request["messages"] = body.messages
        response["choices"] = [{"index": 0, "message": {"role": "assistant", "content": body.answer}}]
    meta = {"request_id": row.request_id, "deployment": row.deployment, "cost_usd": str(row.cost_total)}
    return record | {"request": request, "response": response, "margin": meta | {"tags": list(row.tags)}}
