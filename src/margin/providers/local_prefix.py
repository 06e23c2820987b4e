"""Prefix reuse for the batched local engine: finished prompts' KV cells kept in reserved sequences.

When a sequence ends, the cells it evaluated (its prompt and the tokens it generated) are moved to a
cache sequence instead of being freed (`llama_memory_seq_cp` only tags the cells with another sequence
id, nothing is copied). A new prompt that starts with the same tokens (a shared system prompt, a
few-shot block, a chat's earlier turns) gets those cells tagged with its own sequence id and only
prefills the rest. The number of cached prefixes is bounded (LRU); an entry is also dropped when the
KV cache needs its cells for live sequences. Runs on the engine's scheduler thread only.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

MIN_PREFIX = 4  # shorter prompts are not worth an entry (nor a lookup hit)


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens `a` and `b` share."""
    n = min(len(a), len(b))
    if list(a[:n]) == list(b[:n]):
        return n
    low, high = 0, n  # a[:low] == b[:low] and a[:high] != b[:high]: bisect on slice equality (C speed)
    while high - low > 1:
        middle = (low + high) // 2
        if list(a[low:middle]) == list(b[low:middle]):
            low = middle
        else:
            high = middle
    return low


class PrefixCache:
    """LRU of cached prefixes, each living in one reserved sequence id of the shared context.

    `copy(src, dst, n)` tags the first `n` cells of `src` with `dst`; `drop(seq)` frees a sequence."""

    def __init__(
        self, seq_ids: Sequence[int], *, copy: Callable[[int, int, int], None], drop: Callable[[int], None]
    ) -> None:
        self._free = list(seq_ids)
        self._entries: OrderedDict[int, list[int]] = OrderedDict()
        self._copy = copy
        self._drop = drop
        self.hits = 0
        self.misses = 0
        self.reused_tokens = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, tokens: Sequence[int], seq: int) -> int:
        """Give `seq` the longest cached prefix of `tokens` (at most all but its last token, which
        must be evaluated for its logits); returns how many tokens it got."""
        best, length = -1, 0
        for cache_seq, cached in self._entries.items():
            shared = common_prefix(cached, tokens)
            if shared > length:
                best, length = cache_seq, shared
        length = min(length, len(tokens) - 1)
        if best < 0 or length < MIN_PREFIX:
            self.misses += 1
            return 0
        self._entries.move_to_end(best)
        self._copy(best, seq, length)
        self.hits += 1
        self.reused_tokens += length
        return length

    def keep(self, seq: int, tokens: list[int]) -> None:
        """`seq` has ended with `tokens` evaluated: keep its cells as an entry, then free `seq`."""
        if self._free or self._entries:
            self._store(seq, tokens)
        self._drop(seq)

    def _store(self, seq: int, tokens: list[int]) -> None:
        if len(tokens) < MIN_PREFIX:
            return
        for cache_seq, cached in list(self._entries.items()):
            shared = common_prefix(cached, tokens)
            if shared == len(tokens):  # already cached, within a longer entry
                self._entries.move_to_end(cache_seq)
                return
            if shared == len(cached):  # the new entry supersedes this one
                self._remove(cache_seq)
        if not self._free:
            self.evict()
        cache_seq = self._free.pop()
        self._copy(seq, cache_seq, len(tokens))
        self._entries[cache_seq] = tokens

    def evict(self) -> bool:
        """Free the least recently used entry (its cells go back to the KV cache); False if none."""
        if not self._entries:
            return False
        cache_seq = next(iter(self._entries))
        self._remove(cache_seq)
        self.evictions += 1
        return True

    def _remove(self, cache_seq: int) -> None:
        del self._entries[cache_seq]
        self._drop(cache_seq)
        self._free.append(cache_seq)
