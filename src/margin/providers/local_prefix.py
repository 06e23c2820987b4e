"""Prefix reuse for the batched local engine: a finished sequence's KV cells stay where they are.

The engine gives every sequence its own KV stream (llama.cpp's non-unified cache), so attention
sums run over the same cells in the same order whatever else is in the batch: answers do not change
with batching. When a sequence ends, its cells (prompt and generated tokens) are kept as an entry
instead of being freed. A new prompt on any lane takes the longest cached prefix of its tokens: from
its own lane's entry by dropping the cells past the shared prefix, or from another idle lane by
copying that lane's stream (`llama_memory_seq_cp`, a whole-buffer copy between streams) and dropping
the rest; then it prefills only what follows. Entries are bounded (LRU, `prefix_cache`); an entry is
lost when its lane is taken by a prompt that does not share it. Runs on the scheduler thread only.
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
    """LRU of the idle sequences whose cells are kept, with the tokens those cells hold.

    `copy(src, dst)` copies a whole sequence; `trim(seq, n)` drops its cells from position `n` on
    (n=0 frees it)."""

    def __init__(self, limit: int, *, copy: Callable[[int, int], None], trim: Callable[[int, int], None]) -> None:
        self.limit = limit
        self._entries: OrderedDict[int, list[int]] = OrderedDict()
        self._copy = copy
        self._trim = trim
        self.hits = 0
        self.misses = 0
        self.reused_tokens = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, tokens: Sequence[int], seq: int) -> int:
        """Give `seq` the longest cached prefix of `tokens` (at most all but its last token, which
        must be evaluated for its logits); returns how many tokens it got. `seq` holds nothing else."""
        best, length = -1, 0
        for cached_seq, cached in self._entries.items():
            shared = common_prefix(cached, tokens)
            if shared > length or (shared == length and cached_seq == seq):
                best, length = cached_seq, shared
        self._entries.pop(seq, None)  # the lane is taken: its entry goes, whatever it held
        length = min(length, len(tokens) - 1)
        if best < 0 or length < MIN_PREFIX:
            self.misses += 1
            self._trim(seq, 0)
            return 0
        if best != seq:
            self._copy(best, seq)
            self._entries.move_to_end(best)
        self._trim(seq, length)
        self.hits += 1
        self.reused_tokens += length
        return length

    def keep(self, seq: int, tokens: list[int]) -> None:
        """`seq` has ended with `tokens` evaluated: its cells stay, as the newest entry."""
        if self.limit == 0 or len(tokens) < MIN_PREFIX:
            self._trim(seq, 0)
            return
        self._entries[seq] = tokens
        self._entries.move_to_end(seq)
        while len(self._entries) > self.limit:
            self.evict()

    def evict(self) -> bool:
        """Free the least recently used entry's cells; False if there is none."""
        if not self._entries:
            return False
        cached_seq, _ = self._entries.popitem(last=False)
        self._trim(cached_seq, 0)
        self.evictions += 1
        return True
