"""A documented token estimate for when an upstream reports no usage and no tokenizer is at hand.

The rule (docs/pricing.md): one token per 4 bytes of UTF-8, rounded up, per text; plus, for a
chat prompt, OpenAI's cookbook accounting of 3 tokens per message, 1 per `name` and 3 to prime
the reply. Image parts count 85 tokens (OpenAI's low-detail base), a floor. English prose runs
about 4 characters per token with the BPE tokenizers in use, so the estimate is close for it and
high for CJK text (3 bytes per character), which errs towards over- rather than under-charging.
Rows priced from it carry `source="estimated"`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from margin.types import Usage

BYTES_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING_TOKENS = 3
IMAGE_PART_TOKENS = 85

Prompt = str | Sequence[Mapping[str, Any]]


def estimate_text_tokens(text: str) -> int:
    """ceil(UTF-8 bytes / 4); 0 for the empty string."""
    size = len(text.encode("utf-8", errors="replace"))
    return -(-size // BYTES_PER_TOKEN)


def _content_tokens(content: Any) -> int:
    if isinstance(content, str):
        return estimate_text_tokens(content)
    if isinstance(content, Sequence) and not isinstance(content, bytes | bytearray):
        return sum(_part_tokens(part) for part in content)
    if content is None:
        return 0
    # Tool calls, function arguments and other structured fields are sent as JSON text.
    return estimate_text_tokens(json.dumps(content, ensure_ascii=False, default=str))


def _part_tokens(part: Any) -> int:
    if isinstance(part, Mapping):
        kind = part.get("type")
        if kind in ("image_url", "image", "input_image"):
            return IMAGE_PART_TOKENS
        if isinstance(part.get("text"), str):
            return estimate_text_tokens(part["text"])
    return _content_tokens(part) if isinstance(part, str) else 0


def estimate_message_tokens(messages: Sequence[Mapping[str, Any]]) -> int:
    """Prompt tokens of a chat `messages` list by the cookbook rule with the byte estimate."""
    total = REPLY_PRIMING_TOKENS
    for message in messages:
        total += TOKENS_PER_MESSAGE
        for key, value in message.items():
            total += _content_tokens(value)
            if key == "name":
                total += TOKENS_PER_NAME
    return total


def estimate_tokens(prompt: Prompt, completion: str = "") -> Usage:
    """Estimated usage of a request: `prompt` is a text prompt or a chat `messages` list and
    `completion` the generated text. All input is counted uncached."""
    prompt_tokens = estimate_text_tokens(prompt) if isinstance(prompt, str) else estimate_message_tokens(prompt)
    return Usage(
        input_uncached=prompt_tokens,
        output=estimate_text_tokens(completion),
        source="estimated",
    )
