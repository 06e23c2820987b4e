"""How many prompt tokens one step of the batched local engine may prefill (issue 23).

A step that carries prompt tokens besides the decoding sequences' one token each makes every
decoding stream wait for the whole step: a 256-token chunk on one CPU core is a ~2 s step against a
~70 ms decode step. The budget keeps a mixed step within `stall_factor` times a decode-only step
(the idea of Sarathi-Serve's stall-free batching and vLLM's `max_num_batched_tokens`), learning the
costs online instead of asking the operator to size the chunk to the machine:

- the time of a decode-only step, an EWMA per number of decoding sequences;
- the marginal time of one prompt token: (mixed step - decode-only step) / prompt tokens, an EWMA
  over every step that prefilled (a prefill-only step counts its whole time: a slight overestimate,
  so a cautious budget).

While sequences decode the budget is `(stall_factor - 1) x decode step / token time` tokens, at least
`floor` (a long prompt always progresses) and at most `cap` (`prefill_chunk`); until both costs are
known it is `floor`, and it at most doubles from one step to the next, so one fast outlier cannot
make a long step. With nothing decoding there is nobody to stall: the budget is `cap`.
Pure bookkeeping on the scheduler thread: the engine reports each step's `llama_decode` time.
"""

from __future__ import annotations

MIN_PREFILL = 8  # prompt tokens a step carries at least, however slow prompt tokens are
ALPHA = 0.25  # EWMA weight of the newest step
WHOLE_PROMPT = 64  # while sequences decode, a prompt this short is prefilled in one step, never split


def prompt_portion(rest: int, budget: int, taken: int, decoding: bool, cap: int) -> int:
    """How many of a prompt's `rest` tokens a step prefills, with `budget` tokens left and `taken`
    prompt tokens already in it (`cap`: `prefill_chunk`). While sequences decode a short prompt is not
    split (a split beside decoding sequences can change its greedy answer: docs/local.md) and not held
    to the budget: every short prompt waiting goes whole into the same step, up to `cap` tokens, so
    their arrival costs the decoding streams one longer step, not one per prompt, and their first
    tokens do not wait. The budget governs the prompts longer than that."""
    if rest <= budget:
        return rest
    if decoding and rest <= min(WHOLE_PROMPT, cap):
        return rest if taken + rest <= cap else 0
    return max(budget, 0)


class PrefillBudget:
    def __init__(self, cap: int, stall_factor: float | None, *, floor: int = MIN_PREFILL) -> None:
        self.cap = cap
        self.stall_factor = stall_factor
        self.floor = min(floor, cap)
        self._decode: dict[int, float] = {}  # decoding sequences -> EWMA of a decode-only step (s)
        self._per_token: float | None = None  # EWMA of one prompt token's marginal time (s)
        self._last = self.floor  # the last budget given while sequences decoded

    def tokens(self, decoding: int) -> int:
        """The prompt tokens the next step may carry, with `decoding` sequences decoding in it."""
        if decoding == 0 or self.stall_factor is None:
            return self.cap
        step = self.decode_step(decoding)
        if step is None or self._per_token is None:
            chunk = self.floor
        elif self._per_token <= 0:
            chunk = self.cap
        else:
            chunk = int((self.stall_factor - 1) * step / self._per_token)
        chunk = max(self.floor, min(self.cap, chunk, 2 * self._last))
        self._last = chunk
        return chunk

    def observe(self, decoding: int, prefilled: int, seconds: float) -> None:
        """A step ran: `decoding` sequences decoded one token each, `prefilled` prompt tokens were
        evaluated beside them, in `seconds` (of `llama_decode`)."""
        if prefilled == 0:
            if decoding:
                old = self._decode.get(decoding)
                self._decode[decoding] = seconds if old is None else old + ALPHA * (seconds - old)
            return
        base = self.decode_step(decoding) if decoding else 0.0
        if base is None:  # no decode-only step of this size measured yet: nothing to subtract
            return
        per_token = max(0.0, seconds - base) / prefilled
        old_token = self._per_token
        self._per_token = per_token if old_token is None else old_token + ALPHA * (per_token - old_token)

    def decode_step(self, decoding: int) -> float | None:
        """The decode-only step time for `decoding` sequences: measured, else the nearest size measured
        (the smaller one on a tie: a cautious budget), else None."""
        if decoding in self._decode:
            return self._decode[decoding]
        if not self._decode:
            return None
        nearest = min(self._decode, key=lambda n: (abs(n - decoding), n))
        return self._decode[nearest]

    @property
    def per_token(self) -> float | None:
        return self._per_token
