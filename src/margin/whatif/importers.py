"""Importers into the what-if traffic shape (margin.whatif.traffic).

`openai_batch`: an OpenAI Batch API input file (`custom_id`, `method`, `url`, `body`) joined by
`custom_id` with its output file (`custom_id`, `response: {status_code, body}`). A line of either
file that cannot be used is reported with its file and line number; an input line without an
answer, or an answer that is not a 200 chat completion, is reported and left out. The answer's
`created` is the timestamp (the input line's position breaks ties).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

CHAT_URL = "/v1/chat/completions"


@dataclass
class Imported:
    records: list[dict[str, Any]] = field(default_factory=list)
    issues: list[str] = field(default_factory=list)


def _objects(path: Path, issues: list[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                value = orjson.loads(raw)
            except orjson.JSONDecodeError:
                issues.append(f"{path.name} line {number}: not JSON")
                continue
            if isinstance(value, dict) and isinstance(value.get("custom_id"), str):
                yield number, value
            else:
                issues.append(f"{path.name} line {number}: no `custom_id`")


def openai_batch(input_path: Path, output_path: Path) -> Imported:
    result = Imported()
    answers: dict[str, dict[str, Any]] = {}
    for number, line in _objects(output_path, result.issues):
        raw = line.get("response")
        response: dict[str, Any] = raw if isinstance(raw, dict) else {}
        body = response.get("body")
        if response.get("status_code") != 200 or not isinstance(body, dict):
            result.issues.append(f"{output_path.name} line {number}: {line['custom_id']} has no 200 answer")
            continue
        answers[line["custom_id"]] = body
    for number, line in _objects(input_path, result.issues):
        body = line.get("body")
        if line.get("url") != CHAT_URL or not isinstance(body, dict):
            result.issues.append(f"{input_path.name} line {number}: not a {CHAT_URL} request")
            continue
        answer = answers.get(line["custom_id"])
        if answer is None:
            result.issues.append(f"{input_path.name} line {number}: {line['custom_id']} has no answer")
            continue
        created = answer.get("created")
        timestamp = float(created) if isinstance(created, int | float) else 0.0
        result.records.append({"timestamp": timestamp + number * 1e-6, "request": body, "response": answer})
    return result
