"""Stage ⑥: what the request used. Reported usage when the upstream gives it, an estimate (marked
as such) when it does not, and for streams the usage of what was actually generated even when the
client hangs up halfway."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping

from margin.metering.pricebook import PriceBook
from margin.metering.usage_fill import fill_unreported
from margin.pipeline.context import PromptCounts, RequestContext
from margin.pipeline.trace import stage
from margin.providers.base import Provider
from margin.providers.token_count import INLINE_CHARS, INLINE_TEXTS
from margin.types import COST_BUCKETS, JSON, ChatRequest, Chunk, Cost, EmbeddingRequest, Usage

TokenCounter = Callable[[str], int]


def estimate_text_tokens(text: str) -> int:
    """Documented fallback when no tokenizer is known: one token per 4 UTF-8 bytes, rounded up."""
    return math.ceil(len(text.encode("utf-8")) / 4) if text else 0


def prompt_text(request: ChatRequest) -> list[str]:
    if request.kind == "completion":
        prompt = request.prompt
        return [prompt if isinstance(prompt, str) else " ".join(map(str, prompt or []))]
    texts = []
    for message in request.messages:
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.extend(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return texts


def count_prompt_now(request: ChatRequest, count: TokenCounter) -> int:
    """The prompt's tokens counted here, on the event loop, plus chat framing. A request's prompt is
    counted ahead, off the loop (`Meter.count_ahead`); this is for the others (a continuation with
    its prefill, a refusal's what-would-fit probes). A deployment's own counter (a local model's
    tokenizer) is used only for a short prompt: over INLINE_CHARS, or INLINE_TEXTS texts, in all,
    the byte estimate counts instead, so no prompt stalls the loop however it is split."""
    texts = prompt_text(request)
    if len(texts) > INLINE_TEXTS or sum(map(len, texts)) > INLINE_CHARS:
        count = estimate_text_tokens
    return sum(count(t) for t in texts) + framing_tokens(request)


def framing_tokens(request: ChatRequest) -> int:
    """Chat framing: 3 tokens per message and 3 to prime the reply (OpenAI's published rule)."""
    return 0 if request.kind == "completion" else 3 * len(request.messages) + 3


def _texts_of(request: ChatRequest | EmbeddingRequest) -> list[str]:
    if isinstance(request, ChatRequest):
        return prompt_text(request)
    return [text for text in request.inputs if isinstance(text, str)]


def _uncounted_tokens(request: ChatRequest | EmbeddingRequest) -> int:
    """What a prompt costs besides its texts: chat framing, or the embedding inputs already given
    as token arrays (counted by their length)."""
    if isinstance(request, ChatRequest):
        return framing_tokens(request)
    return sum(len(tokens) for tokens in request.inputs if isinstance(tokens, list))


def answer_text(body: JSON) -> list[str]:
    texts = []
    for choice in body.get("choices") or ():
        message = choice.get("message") or {}
        texts.append(str(message.get("content") or choice.get("text") or ""))
        for call in message.get("tool_calls") or ():
            texts.append(str((call.get("function") or {}).get("arguments") or ""))
    return texts


class Meter:
    def __init__(self, providers: Mapping[str, Provider], prices: PriceBook, *, enabled: bool = True) -> None:
        self.providers = providers
        self.prices = prices
        self.enabled = enabled

    def counter_for(self, deployment: str | None) -> TokenCounter:
        provider = self.providers.get(deployment or "")
        count = getattr(provider, "count_tokens", None)
        return count if callable(count) else estimate_text_tokens

    def estimator(self, ctx: RequestContext) -> TokenCounter:
        return self.counter_for(ctx.deployment)

    def estimate_prompt(self, request: ChatRequest, count: TokenCounter) -> int:
        return count_prompt_now(request, count)

    def prompt_for(self, ctx: RequestContext, request: ChatRequest, deployment: str | None = None) -> int:
        """`request`'s prompt tokens on `deployment` (default: the one that answered): as counted
        ahead when it was (`count_ahead`), else counted now."""
        name = deployment or ctx.deployment
        counted = ctx.counted_prompt(request, name)
        return counted if counted is not None else self.estimate_prompt(request, self.counter_for(name))

    @stage("limits")  # counting the prompt is the first half of admission: one span with the reservation
    async def count_ahead(
        self, ctx: RequestContext, request: ChatRequest | EmbeddingRequest, deployments: Iterable[str]
    ) -> None:
        """Count the prompt once for every deployment whose tokenizer is too slow for the event loop
        (the local models), off the loop, before the request reserves its budget; the rest count
        with the byte estimate, cheap enough to run where needed."""
        texts: list[str] | None = None
        tokens: dict[str, int] = {}
        for name in dict.fromkeys(deployments):
            ahead = getattr(self.providers.get(name), "count_tokens_ahead", None)
            if not callable(ahead):
                continue
            if texts is None:
                texts = _texts_of(request)
            tokens[name] = await ahead(texts) + _uncounted_tokens(request)
        if tokens:
            ctx.prompt_counts = PromptCounts(request, tokens)

    def usage_of(self, ctx: RequestContext, request: ChatRequest, usage: Usage | None, body: JSON) -> Usage:
        """The upstream's report, or an estimate marked as such when it sent none."""
        if usage is not None:
            return usage
        count = self.estimator(ctx)
        output = sum(count(t) for t in answer_text(body))
        return Usage(input_uncached=self.prompt_for(ctx, request), output=output, source="estimated")

    @stage("meter")
    def settle(self, ctx: RequestContext, usage: Usage | None) -> Cost | None:
        """Price every attempt (failed ones cost what they were billed: nothing unless they carry
        usage) and return the cost of the request: the sum of its attempts."""
        if ctx.attempts and usage is not None:
            ctx.attempts[-1].usage = usage
        ctx.usage = usage
        if not self.enabled:
            return None
        total: Cost | None = None
        for attempt in ctx.attempts:
            if attempt.usage is None and attempt.deployment not in self.prices.gpu_prices:
                continue
            attempt.cost = self.prices.cost(
                attempt.deployment, attempt.usage or Usage(), gpu_seconds=attempt.gpu_seconds
            )
            total = attempt.cost if total is None else _add(total, attempt.cost)
        ctx.cost = total
        ctx.counterfactual = self.counterfactual(ctx, usage)
        return total

    def counterfactual(self, ctx: RequestContext, usage: Usage | None) -> Cost | None:
        """For a tiered route: what the answer would have cost from the premium tier, priced on the
        answer's own usage (the usual all-premium counterfactual). None for untiered routes."""
        premium = ctx.decision.premium if ctx.decision is not None else None
        if premium is None or not self.prices.known(premium):
            return None
        if usage is None:
            return Cost()  # nothing was answered: whatever the attempts cost was spent for nothing
        answered = ctx.attempts[-1] if ctx.attempts else None
        same = answered is not None and answered.deployment == premium
        return self.prices.cost(premium, usage, gpu_seconds=answered.gpu_seconds if same and answered else 0.0)


def _add(a: Cost, b: Cost) -> Cost:
    return Cost(
        **{bucket: getattr(a, bucket) + getattr(b, bucket) for bucket in COST_BUCKETS},
        price_version=a.price_version if a.price_version == b.price_version else "mixed",
        model=b.model,
        basis=b.basis if a.basis == b.basis else "catalog",
    )


# Delta keys whose text is billed as output besides the answer's (StreamMeter.other).
_OTHER_OUTPUT = frozenset(("reasoning_content", "reasoning", "tool_calls"))


class StreamMeter:
    """Watches a stream go by: keeps the upstream's usage, strips the usage-only chunk the client
    did not ask for, and counts generated text so a cut-off stream is still metered: what the
    upstream reported before the cut stands, the estimate fills only the rest."""

    def __init__(self, request: ChatRequest, *, estimate: TokenCounter, prompt_tokens: int) -> None:
        self.request = request
        self.estimate = estimate
        self.prompt_tokens = prompt_tokens
        self.reported: Usage | None = None
        self.so_far: Usage | None = None  # a report in progress (Chunk.usage_so_far)
        self.generated: list[str] = []  # the answer's text (choice content), piece by piece
        self.other: list[str] = []  # reasoning and tool-call arguments: billed as output too
        self.last_body: JSON | None = None

    def observe(self, chunk: Chunk) -> Chunk | None:
        if chunk.usage is not None:
            self.reported = chunk.usage
        if chunk.usage_so_far is not None:
            self.so_far = chunk.usage_so_far
        body = chunk.body
        choices = body.get("choices")
        if choices:
            self.last_body = body
            for choice in choices:
                delta = choice.get("delta") or choice  # legacy completions carry "text" on the choice
                text = delta.get("content") or delta.get("text")
                if text:
                    self.generated.append(text)
                if _OTHER_OUTPUT.isdisjoint(delta):
                    continue  # the usual delta, text only: nothing else to count (every chunk comes here)
                reasoning = delta.get("reasoning_content") or delta.get("reasoning")
                if isinstance(reasoning, str):
                    self.other.append(reasoning)
                for call in delta.get("tool_calls") or ():
                    self.other.append(str((call.get("function") or {}).get("arguments") or ""))
        elif chunk.usage is not None and not self.request.include_usage:
            return None  # the usage-only chunk margin asked for on the client's behalf
        return chunk

    def final_usage(self) -> Usage:
        if self.reported is not None:
            return self.reported
        # Count the whole text once: a tokenizer (or the bytes/4 rule) applied piece by piece
        # over-counts, since pieces split words.
        output = self.estimate("".join(self.generated) + "".join(self.other))
        return fill_unreported(self.so_far, Usage(input_uncached=self.prompt_tokens, output=output, source="estimated"))

    def answer(self, max_chars: int) -> str | None:
        """The streamed answer's text as a non-streamed answer would carry it (the first choice's
        content; with n > 1 the choices' pieces interleave, so only n == 1 is meaningful); None when
        it is longer than `max_chars`. Joined once, after the stream: nothing is added per chunk."""
        if sum(map(len, self.generated)) > max_chars:
            return None
        return "".join(self.generated)

    def usage_chunk(self) -> Chunk | None:
        """The usage chunk the client asked for, when the upstream did not send one. Its usage is
        marked `margin_estimated: true` (docs/ledger.md): margin counted it, the upstream did not."""
        if not self.request.include_usage or self.reported is not None or self.last_body is None:
            return None
        usage = self.final_usage()
        body = {k: v for k, v in self.last_body.items() if k != "choices"}
        body["choices"] = []
        body["usage"] = {**usage.to_openai(), "margin_estimated": True} if usage.estimated else usage.to_openai()
        return Chunk(body=body, usage=usage)
