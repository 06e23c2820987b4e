"""Token counts with a real tokenizer never stall the event loop (issue 16, 2): a cheap bound first,
then the tokenizer on a worker thread (margin.providers.token_count)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from margin.providers.token_count import INLINE_CHARS, OffLoopCounter, estimate, longest_token_bytes


class RecordingTokenizer:
    """Counts words, and remembers on which thread and how much it was asked to tokenize."""

    def __init__(self, *, seconds_per_char: float = 0.0) -> None:
        self.seconds_per_char = seconds_per_char
        self.threads: list[int] = []
        self.chars = 0

    def __call__(self, text: str) -> int:
        self.threads.append(threading.get_ident())
        self.chars += len(text)
        if self.seconds_per_char:
            time.sleep(self.seconds_per_char * len(text))  # sleeping releases the GIL, as llama.cpp does
        return len(text.split())


def counter(window: int | None = 2048, longest: int | None = 32) -> tuple[OffLoopCounter, RecordingTokenizer]:
    tokenizer = RecordingTokenizer()
    count = OffLoopCounter(window)
    count.attach(tokenizer, max_token_chars=longest)
    return count, tokenizer


async def test_a_prompt_that_cannot_fit_is_counted_by_its_length_alone() -> None:
    count, tokenizer = counter(window=2048, longest=32)
    prompt = ["word " * 1_400_000]  # 7 MB: at least 7,000,000 / 32 tokens, far over 2,048
    counted = await count.count_ahead(prompt)
    assert counted == -(-7_000_000 // 32)
    assert tokenizer.chars == 0, "nothing was tokenized"
    assert count.count(prompt[0]) == counted  # the same bound when asked on the loop


async def test_a_prompt_that_may_fit_is_tokenized_on_a_worker_thread() -> None:
    count, tokenizer = counter()
    texts = ["lorem ipsum " * 500] * 3  # 18 KB: may fit 2,048 tokens of up to 32 characters
    assert await count.count_ahead(texts) == 3000
    assert tokenizer.threads and threading.get_ident() not in tokenizer.threads


async def test_many_short_texts_are_tokenized_on_a_worker_thread_too() -> None:
    count, tokenizer = counter(window=None)
    assert await count.count_ahead(["a b"] * 2048) == 4096
    assert threading.get_ident() not in tokenizer.threads


async def test_a_short_prompt_is_counted_inline() -> None:
    count, tokenizer = counter()
    assert await count.count_ahead(["hello there", "general kenobi"]) == 4
    assert tokenizer.threads == [threading.get_ident()] * 2


async def test_the_loop_keeps_turning_while_a_prompt_is_tokenized() -> None:
    count = OffLoopCounter(None)
    count.attach(RecordingTokenizer(seconds_per_char=1e-6), max_token_chars=None)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    ticker = asyncio.create_task(tick())
    started = time.perf_counter()
    await count.count_ahead(["x " * 150_000])  # 0.3 s of tokenizing
    elapsed = time.perf_counter() - started
    ticker.cancel()
    assert elapsed >= 0.25
    assert ticks >= 10, f"the loop turned {ticks} times in {elapsed:.2f}s"


def test_a_long_text_counted_on_the_loop_gets_the_estimate_not_the_tokenizer() -> None:
    count, tokenizer = counter(window=None)
    text = "lorem ipsum " * 5000
    assert count.count(text) == estimate(text)
    assert tokenizer.chars == 0
    short = "lorem ipsum " * (INLINE_CHARS // 12)
    assert count.count(short) == len(short.split())


async def test_before_the_tokenizer_is_loaded_the_estimate_answers() -> None:
    count = OffLoopCounter(2048)
    assert count.count("12345678") == 2
    assert await count.count_ahead(["12345678", ""]) == 2


class Vocabulary:
    def n_vocab(self) -> int:
        return 4

    def detokenize(self, tokens: list[int], special: bool = False) -> bytes:
        assert special, "special tokens count too: `special=True` tokenizing makes them one token"
        return [b"a", b"<|im_start|>", b"--------", b"\xe2\x82\xac"][tokens[0]]


def test_the_longest_token_comes_from_the_vocabulary() -> None:
    assert longest_token_bytes(Vocabulary()) == 12
    assert longest_token_bytes(object()) is None


@pytest.mark.parametrize("chars", [65_536, 65_537])
def test_the_bound_is_the_window_times_the_longest_token(chars: int) -> None:
    count, _ = counter(window=2048, longest=32)
    assert (count.lower_bound(chars) is not None) == (chars > 2048 * 32)
