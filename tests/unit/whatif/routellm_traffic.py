"""Recorded traffic built from the RouteLLM outcomes (../shared/data/routellm, folds 1-4): the
strong deployment (gpt-4-1106-preview) answered every request; the weak one (Mixtral-8x7B) is
graded by the recorded weak score. MT-Bench's 1-10 grades are read as grade / 10."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "routellm" / "routellm_pairs_train.jsonl"
STRONG = "gpt-4-1106-preview"
WEAK = "together/mistralai/Mixtral-8x7B-Instruct-v0.1"
PRICES = {STRONG: {"input": "10", "output": "30", "provider": "openai"}}


def load_rows(every: int = 1, benchmarks: tuple[str, ...] = ("mmlu", "gsm8k", "mtbench")) -> list[dict[str, Any]]:
    rows = []
    with DATA.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle):
            row = json.loads(line)
            if number % every == 0 and not row["contaminated"] and row["benchmark"] in benchmarks:
                rows.append(row)
    return rows


def grade(row: dict[str, Any], name: str) -> float:
    score = float(row[name])
    return score / 10 if row["benchmark"] == "mtbench" else score


def record(row: dict[str, Any], timestamp: float) -> dict[str, Any]:
    return {
        "timestamp": timestamp,
        "task": row["benchmark"],
        "request": {"model": STRONG, "messages": [{"role": "user", "content": row["prompt"]}], "temperature": 0},
        "response": {
            "model": STRONG,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "..."}, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": row["in_tokens_est"],
                "completion_tokens": row["strong_out_tokens_est"],
                "total_tokens": row["in_tokens_est"] + row["strong_out_tokens_est"],
            },
        },
        "quality": grade(row, "strong_score"),
        "tiers": {
            WEAK: {
                "quality": grade(row, "weak_score"),
                "usage": {"prompt_tokens": row["in_tokens_est"], "completion_tokens": row["weak_out_tokens_est"]},
            }
        },
    }


def traffic(rows: list[dict[str, Any]], total: int, repeat_share: float, seed: int = 7) -> list[dict[str, Any]]:
    """`total` requests, one every 10 s: fresh prompts, and with `repeat_share` a repeat of an
    earlier one (a tenth of the repeats are delayed by two hours, past a one-hour TTL). The "id"
    field is ignored by margin (an unknown field), kept for the test's own bookkeeping."""
    rng = random.Random(seed)
    order = list(rows)
    rng.shuffle(order)
    fresh = iter(order)
    sent: list[dict[str, Any]] = []
    out: list[dict[str, Any]] = []
    for i in range(total):
        row = next(fresh, None) if not sent or rng.random() >= repeat_share else None
        if row is None:
            row = rng.choice(sent)
            late = rng.random() < 0.1
        else:
            sent.append(row)
            late = False
        out.append(record(row, i * 10.0 + (7200.0 if late else 0.0)) | {"id": row["id"]})
    return out
