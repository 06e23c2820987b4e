"""Counting tokens with a model's own tokenizer without stalling the event loop.

llama.cpp's tokenizer is exact but not cheap, and it grows faster than the text: about 1 ms for 4 KB,
30-70 ms for 64 KB and 0.6-1.3 s for 1 MB on one core (measured with SmolLM2's). Counted on the event
loop, one 7 MB prompt froze every tenant's requests, `/healthz` and open streams for 3.3 s. So:

1. A cheap bound first. No token is longer than the vocabulary's longest (`max_token_chars`, read
   from the vocabulary at load: 32 characters for SmolLM2), so a text of C characters has at least
   ceil(C / max_token_chars) tokens. Where that bound is already over the context window, the text
   cannot fit, and that bound is its count: nothing is tokenized. For SmolLM2's 2,048-token window,
   any prompt over 64 KB is refused (or sent to a larger tier) this way, in microseconds.
2. Then the tokenizer, on a worker thread: `count_ahead` counts a whole prompt in one job, before the
   request reserves its budget; llama.cpp releases the GIL while it tokenizes, so the loop goes on.
   The request path then reads that count (`RequestContext.prompt_counts`) wherever it needs it.
3. A count asked for on the loop (`count`: generated text, a continuation's prefill) tokenizes
   inline only up to INLINE_CHARS (a few milliseconds at most); a longer text gets the documented
   estimate of one token per four characters instead.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence

# Inline on the loop, at most this many characters per count (about 3 ms with llama.cpp).
INLINE_CHARS = 8192
# A prompt of at most this many texts and INLINE_CHARS characters in all is counted inline: a
# thread hop costs more. Each llama.cpp call costs about 40 us even for an empty text.
INLINE_TEXTS = 16
CHARS_PER_TOKEN_ESTIMATE = 4  # the documented fallback estimate (docs/pricing.md)

Tokenize = Callable[[str], int]
CountMany = Callable[[Sequence[str]], int]


def estimate(text: str) -> int:
    """The estimate used before the tokenizer is loaded, or for a long text counted on the loop."""
    return max(1, len(text) // CHARS_PER_TOKEN_ESTIMATE) if text else 0


class OffLoopCounter:
    """A tokenizer's counts for one deployment, exact where it matters and never slow on the loop."""

    def __init__(self, window: int | None, *, fallback: Tokenize = estimate) -> None:
        self.window = window  # the deployment's context window, in tokens (None: no prompt-wide bound)
        self.fallback = fallback  # before the tokenizer is loaded, and for long texts counted on the loop
        self._tokenize: Tokenize | None = None
        self._count_many: CountMany | None = None
        self.max_token_chars: int | None = None

    def attach(
        self, tokenize: Tokenize, *, max_token_chars: int | None = None, count_many: CountMany | None = None
    ) -> None:
        """The tokenizer is loaded. `max_token_chars`: its longest token (None: unknown, no bound);
        `count_many`: counts a batch on a worker thread (by default `tokenize` each text), and must
        release the GIL while it works, as llama.cpp's tokenizer and `tokenizers`' encode_batch do."""
        self._tokenize = tokenize
        self._count_many = count_many
        self.max_token_chars = max_token_chars

    def lower_bound(self, chars: int) -> int | None:
        """ceil(chars / longest token) when that is more than the window, else None (may fit)."""
        if self.max_token_chars is None or self.window is None:
            return None
        least = math.ceil(chars / self.max_token_chars)
        return least if least > self.window else None

    def count(self, text: str) -> int:
        """Tokens in `text`, on the loop: exact up to INLINE_CHARS, else bounded or estimated."""
        tokenize = self._tokenize
        if tokenize is None:
            return self.fallback(text)
        over = self.lower_bound(len(text))
        if over is not None:
            return over
        return tokenize(text) if len(text) <= INLINE_CHARS else self.fallback(text)

    async def count_ahead(self, texts: Sequence[str]) -> int:
        """Tokens in all of `texts`, exact unless they certainly exceed the window; the tokenizing
        runs on a worker thread unless the texts are few and short."""
        tokenize = self._tokenize
        if tokenize is None:
            return sum(map(self.fallback, texts))
        chars = sum(map(len, texts))
        over = self.lower_bound(chars)
        if over is not None:
            return over
        if chars <= INLINE_CHARS and len(texts) <= INLINE_TEXTS:
            return sum(map(tokenize, texts))
        many = self._count_many
        if many is not None:
            return await asyncio.to_thread(many, list(texts))
        nonempty = [t for t in texts if t]
        return await asyncio.to_thread(lambda: sum(map(tokenize, nonempty)))


def longest_token_bytes(model: object) -> int | None:
    """The longest piece in a llama.cpp model's vocabulary, in bytes (so also a bound in characters),
    or None when the model does not say. About 0.1 s for 49k tokens: call it off the loop."""
    n_vocab = getattr(model, "n_vocab", None)
    detokenize = getattr(model, "detokenize", None)
    if not callable(n_vocab) or not callable(detokenize):
        return None
    size = n_vocab()
    if not isinstance(size, int) or size <= 0:
        return None
    return max(len(detokenize([token], special=True)) for token in range(size))
