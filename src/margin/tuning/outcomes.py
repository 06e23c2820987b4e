"""A tuned student's measured outcomes in the learned router's training format (docs/routing.md,
RouteLLM JSONL): one row per item the gate ran on both the student and its teacher, the student as
the weak (cheap) tier and the teacher as the strong one, with the tokens each actually used. Fed to
`margin router train --add`, the router learns which traffic the student handles as well as the
teacher, and moves it there."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from margin.evals.loader import load_eval_set
from margin.evals.results import RunResults


def router_rows(eval_set: Path, label: str, student: RunResults, teacher: RunResults) -> list[dict[str, Any]]:
    """Rows for the items both arms answered (a failed call has no score to learn from)."""
    rows = []
    for item in load_eval_set(eval_set).items:
        weak, strong = student.items.get(item.id), teacher.items.get(item.id)
        if weak is None or strong is None or not weak.ok or not strong.ok:
            continue
        messages = item.chat_messages()
        prompt = "\n".join(str(m["content"]) for m in messages if m.get("role") == "user")
        row: dict[str, Any] = {
            "id": f"{label}:{item.id}", "prompt": prompt, "weak_score": weak.quality, "strong_score": strong.quality,
            "benchmark": f"tuning:{label}", "category": label,
        }  # fmt: skip
        tokens = {"in_tokens_est": strong.input_tokens, "weak_out_tokens_est": weak.output_tokens,
                  "strong_out_tokens_est": strong.output_tokens}  # fmt: skip
        row.update({k: v for k, v in tokens.items() if v is not None})
        rows.append(row)
    return rows


def write_router_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path
