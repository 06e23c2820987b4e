"""Scripted faults for the fake upstream, chosen per model name or per request header.

A fault is a comma-separated spec, e.g. ``status=429,retry_after=2,times=1`` or ``cut_after=3``:

=====================  ==========================================================================
``status=N``           answer with HTTP N and an error envelope (``code=...`` sets its error code)
``retry_after=S``      add a Retry-After header to that error
``times=N``            the fault applies to the first N matching requests, then the upstream is healthy
``for_s=S``            the fault applies for S seconds after the first matching request
``delay=S``            wait S seconds before sending headers
``hang``               accept the request and never answer
``reset``              close the TCP connection before sending headers
``first_token=S``      send stream headers at once, the first event after S seconds
``cut_after=N``        send events 0..N, then drop the connection (no [DONE], no clean end)
``stall_after=N``      send events 0..N, then go silent for ``stall=S`` seconds and close
``malformed_at=N``     send event N (0 is the first) with a data line that is not valid JSON
``malformed_body``     answer a non-streamed request with a 200 whose body is not valid JSON
``no_done``            finish the stream without the ``data: [DONE]`` terminator
``no_usage``           never report usage
``pace=S``             wait S seconds between streamed events (a slow, steady generator)
``garbage_at=N``       insert one unparseable event before event N (the fake loses nothing by it, but
                       nothing tells a client so)
``hold=S``             after the last event keep the connection open S seconds (with ``no_done``:
                       a server that never terminates its stream)
``max_context=N``      refuse prompts over N tokens with a 400 ``context_length_exceeded``
``reject_prefill``     refuse a request whose last message is the assistant's (no prefill support)
``wrong=P``            answer a share P (0..1) of prompts "I do not know." instead, chosen by a hash of
                       the last user message: the same prompts every run (a worse model, for evals)
``judge``              answer as a judge of margin's judge grader, deterministically: ``SCORE: 0``
                       for an answer to grade that is the ``wrong=`` fault's "I do not know.", the
                       top of the asked scale otherwise; pairwise, the other answer wins against it
                       (``WINNER: TIE`` when both or neither are)
``judge_bias``         answer as a judge that favours whatever it reads first, so its two orders never
                       agree: scored, the top of the scale in the grader's first order and 0 in the
                       swapped one; pairwise, always ``WINNER: A``
``cut_after_event=T``  Anthropic face: drop the connection right after the first event of type T
                       (``message_start``, ``ping``, ``content_block_start``, ``content_block_delta``,
                       ``content_block_stop``, ``message_delta``)
``usage_input=N``      report N uncached input tokens (scripted usage; the others likewise:
``usage_cache_read=N`` ``usage_cache_read``, ``usage_cache_write``, ``usage_output``). On the OpenAI
``usage_output=N``     face cache reads are ``prompt_tokens_details.cached_tokens`` (inside
                       ``prompt_tokens``) and cache writes are not reported; on the Anthropic face
                       ``message_start`` carries the input figures (and ``output_tokens: 1``, as
                       Anthropic sends it) and ``message_delta`` the cumulative totals
=====================  ==========================================================================

Event numbers (``cut_after``, ``stall_after``, ``malformed_at``) count every event the face sends,
from 0: on the OpenAI face the role chunk, the content chunks, the finish chunk, the usage chunk;
on the Anthropic face message_start, ping, content_block_start, the deltas, content_block_stop,
message_delta, message_stop.

Without a fault the fake honours assistant prefill: a trailing assistant message is continued, so
the answer is the rest of what it would have said.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from margin.types import Usage


@dataclass(frozen=True, slots=True)
class Fault:
    status: int | None = None
    code: str | None = None
    retry_after: float | None = None
    times: int | None = None
    for_s: float | None = None
    delay: float = 0.0
    hang: bool = False
    reset: bool = False
    first_token: float = 0.0
    cut_after: int | None = None
    stall_after: int | None = None
    stall: float = 30.0
    malformed_at: int | None = None
    malformed_body: bool = False
    no_done: bool = False
    no_usage: bool = False
    pace: float = 0.0
    garbage_at: int | None = None
    hold: float = 0.0
    max_context: int | None = None
    reject_prefill: bool = False
    wrong: float = 0.0
    judge: bool = False
    judge_bias: bool = False
    cut_after_event: str | None = None
    usage_input: int | None = None
    usage_cache_read: int | None = None
    usage_cache_write: int | None = None
    usage_output: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.wrong <= 1:
            raise ValueError(f"wrong={self.wrong:g}: a share between 0 and 1")

    @property
    def scripts_usage(self) -> bool:
        return any(
            v is not None for v in (self.usage_input, self.usage_cache_read, self.usage_cache_write, self.usage_output)
        )

    def usage(self, computed: Usage) -> Usage:
        """The usage to report: the scripted figures where given, the fake's own count elsewhere
        (scripted cache figures replace the computed uncached input only when `usage_input` is unset)."""
        if not self.scripts_usage:
            return computed
        cache_read, cache_write = self.usage_cache_read or 0, self.usage_cache_write or 0
        uncached = self.usage_input if self.usage_input is not None else computed.input_uncached
        output = self.usage_output if self.usage_output is not None else computed.output
        return Usage(input_uncached=uncached, input_cache_read=cache_read, input_cache_write=cache_write, output=output)

    @classmethod
    def parse(cls, spec: str) -> Fault:
        values: dict[str, object] = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            key, _, raw = part.partition("=")
            key = key.strip()
            if key not in cls.__dataclass_fields__:
                raise ValueError(f"unknown fault {key!r} in {spec!r}")
            kind = cls.__dataclass_fields__[key].type
            if "bool" in str(kind):
                values[key] = raw.strip().lower() not in ("0", "false", "no", "off")
            elif not raw:
                raise ValueError(f"fault {key!r} needs a value in {spec!r}")
            elif "int" in str(kind):
                values[key] = int(raw)
            elif "float" in str(kind):
                values[key] = float(raw)
            else:
                values[key] = raw
        return cls(**values)  # type: ignore[arg-type]


@dataclass(slots=True)
class FaultState:
    """How often and since when a (model, spec) fault has fired, to honour `times` and `for_s`."""

    seen: int = 0
    first_at: float | None = None


@dataclass(slots=True)
class FaultBook:
    by_model: dict[str, str] = field(default_factory=dict)
    states: dict[tuple[str, str], FaultState] = field(default_factory=dict)

    def active(self, model: str, header_spec: str | None) -> Fault | None:
        spec = header_spec or self.by_model.get(model)
        if not spec:
            return None
        fault = Fault.parse(spec)
        state = self.states.setdefault((model, spec), FaultState())
        now = time.monotonic()
        state.first_at = state.first_at if state.first_at is not None else now
        state.seen += 1
        if fault.times is not None and state.seen > fault.times:
            return None
        if fault.for_s is not None and now - state.first_at > fault.for_s:
            return None
        return fault
