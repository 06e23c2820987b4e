"""Ids in OpenAI's shapes: `file-...`, `batch_...`, `batch_req_...`, `req_...` (random, URL-safe)."""

from __future__ import annotations

import os


def new_file_id() -> str:
    return "file-" + os.urandom(12).hex()


def new_batch_id(api: str = "openai") -> str:
    """`batch_...`, or Anthropic's `msgbatch_...` for a Message Batch."""
    return ("msgbatch_" if api == "anthropic" else "batch_") + os.urandom(12).hex()


def new_line_id() -> str:
    return "batch_req_" + os.urandom(12).hex()


def new_request_id() -> str:
    return "req_" + os.urandom(12).hex()
