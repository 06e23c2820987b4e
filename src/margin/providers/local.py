"""llama.cpp in-process: the embedded default's local tier.

Generation runs on worker threads (one model instance per concurrency slot, since a llama.cpp
context is not thread-safe) behind a bounded FIFO queue, so the event loop keeps answering
/healthz while the model works, and an overflowing queue is a clear 503 the router can spill from.

What a request may do to a slot is bounded (see `local_slots` and `local_worker`):
- the wait for a slot counts towards the deployment's `first_token` timeout (`response` for
  non-streamed answers), so a busy or wedged model is failed over like a silent upstream;
- a request that ends early (client gone, timeout, cancellation) stops its generation at the next
  token, and the slot comes back from the worker thread itself once llama.cpp has returned;
- a slot that does not come back within its bound makes the deployment unhealthy (/readyz, metrics)
  and, once no slot is usable, fails requests at once so that they go to another tier.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from margin import errors
from margin.config.local_weights import default_model_path
from margin.config.model import DeploymentConfig, LocalSettings
from margin.metering.usage import openai_usage
from margin.providers import timing
from margin.providers.local_engine import BatchedEngine, kv_options
from margin.providers.local_lane import Lane
from margin.providers.local_slots import SlotPool, SlotStats
from margin.providers.local_worker import Generation, Produce, WorkerFailed
from margin.providers.token_count import OffLoopCounter, longest_token_bytes
from margin.types import JSON, ChatRequest, ChatResult, Chunk, EmbeddingRequest, EmbeddingResult, Usage

# The longest a worker asked to stop may take before its slot counts as stuck (capped by the
# deployment's idle timeout). llama.cpp stops between tokens (milliseconds apart); the one step it
# cannot interrupt is evaluating the prompt, about 2 s for a full 2048-token context of a 135M model
# on one busy core, so 10 s flags a wedged worker without mistaking a long prompt for one.
STOP_GRACE_S = 10.0
_PASSED = (
    "temperature",
    "top_p",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "logprobs",
    "top_logprobs",
    "response_format",
    "tools",
    "tool_choice",
)
_NOT_FOR_COMPLETIONS = ("tools", "tool_choice", "response_format", "top_logprobs")
# Answers llama.cpp only builds in its non-streamed form: generated in one uninterruptible call.
_WHOLE_ONLY = ("tools", "tool_choice", "logprobs", "top_logprobs")

T = TypeVar("T")
_NO_ANSWER = "no_answer"  # a non-streamed answer's timeout: reported as a first-token timeout, like other adapters


class LocalProvider:
    def __init__(self, deployment: DeploymentConfig, *, load_model: Callable[[], Any] | None = None) -> None:
        """`load_model` opens one model instance (on a worker thread); tests pass a scripted one, which
        runs on the slot engine (the batched engine drives llama.cpp's context itself)."""
        self.deployment = deployment
        self.settings = deployment.local or LocalSettings()
        engine = "slots" if load_model is not None else self.settings.engine
        openers = {"slots": self._open_instances, "batched": self._open_engine}
        self._open_slots: Callable[[], list[Any]] = openers[engine]
        self._lanes = _lanes(self.settings, engine)
        self.engine: BatchedEngine | None = None
        timeouts = deployment.timeouts
        self._slots = SlotPool(
            deployment.name,
            max_queue=self.settings.max_queue,
            stop_grace=min(timeouts.idle, STOP_GRACE_S),
            max_hold=timeouts.total,
        )
        self._executor = ThreadPoolExecutor(self._lanes, thread_name_prefix="margin-llama")
        self._load_model = load_model or self._open_model
        self._loading: asyncio.Task[None] | None = None
        self._tokenizer: Any = None
        # Prompt counts never stall the event loop (margin.providers.token_count).
        self._counter = OffLoopCounter(deployment.context_window or self.settings.n_ctx)

    @property
    def native_completions(self) -> bool:
        return True

    async def start(self) -> None:
        # Load in the background: the server is up (and /healthz answers) before the weights are in.
        if self._loading is None:
            self._loading = asyncio.create_task(self._load(), name=f"load-{self.deployment.name}")

    async def _load(self) -> None:
        loop = asyncio.get_running_loop()
        models = await loop.run_in_executor(self._executor, self._open_slots)
        tokenizer = self.engine.llama if self.engine is not None else models[0]
        longest = await loop.run_in_executor(self._executor, longest_token_bytes, tokenizer)
        self._tokenizer = tokenizer
        self._counter.attach(self._tokenize, max_token_chars=longest)
        for model in models:
            self._slots.add(model)

    def _open_instances(self) -> list[Any]:
        """The slot engine: one model instance per concurrent request."""
        return [self._load_model() for _ in range(self._lanes)]

    def _open_engine(self) -> list[Any]:
        """The batched engine: one model and context; a lane (sequence id) per concurrent request."""
        from margin.providers.local_engine import BatchedEngine
        from margin.providers.local_lane import Lane

        self.engine = BatchedEngine(self.settings, self._model_path(), lanes=self._lanes)
        return [Lane(self.engine, seq) for seq in range(self._lanes)]

    def _model_path(self) -> Path:
        return Path(self.settings.model_path) if self.settings.model_path else default_model_path()

    def _open_model(self) -> Any:
        from llama_cpp import Llama

        path = self._model_path()
        return Llama(
            model_path=str(path),
            lora_path=self.settings.lora_path,
            n_ctx=self.settings.n_ctx,
            n_threads=self.settings.n_threads or max(1, (os.cpu_count() or 2) // 2),
            n_batch=self.settings.n_batch,
            seed=self.settings.seed,
            verbose=False,
            **kv_options(self.settings),
        )

    async def aclose(self) -> None:
        if self._loading is not None and not self._loading.done():
            self._loading.cancel()
        self._slots.stop_all()
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self.engine is not None:
            self.engine.close()

    def count_tokens(self, text: str) -> int:
        return self._counter.count(text)

    async def count_tokens_ahead(self, texts: Sequence[str]) -> int:
        """A whole prompt's tokens, counted off the event loop (see margin.providers.token_count)."""
        return await self._counter.count_ahead(texts)

    def _tokenize(self, text: str) -> int:
        return len(self._tokenizer.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def slot_stats(self) -> SlotStats:
        return self._slots.stats()

    async def health(self) -> bool:
        """Loaded, no generation slot stuck (a worker that did not stop when asked), and the batched
        engine's loop (if any) running."""
        engine_ok = self.engine is None or self.engine.alive
        return self._loaded_ok() and self._slots.healthy and engine_ok

    def _loaded_ok(self) -> bool:
        loading = self._loading
        return loading is not None and loading.done() and not loading.cancelled() and loading.exception() is None

    # --- slots ----------------------------------------------------------------------------------

    async def _generation(self, budget: float, produce: Produce[T], *, stoppable: bool = True) -> Generation[T]:
        """A generation started on a worker thread, once a slot is free: within `budget` seconds,
        the wait for the weights included."""
        timing.sent()  # the wait for weights and a slot is the local model's time, as an upstream's queue
        started = time.monotonic()
        if self._slots.stats().slots == 0:
            await self._await_weights(budget)
        lease = await self._slots.acquire(budget - (time.monotonic() - started))
        # No await from here to the worker: the lease cannot be orphaned by a cancellation.
        idle = self.deployment.timeouts.idle
        generation = Generation(self._slots, lease, produce, reader_idle=idle, stoppable=stoppable)
        try:
            generation.start(self._executor)
        except RuntimeError as exc:  # the executor is shut down: the gateway is stopping
            raise errors.ServiceUnavailable(f"{self.deployment.name}: the local model is shutting down") from exc
        return generation

    async def _await_weights(self, budget: float) -> None:
        name = self.deployment.name
        if self._loading is None:
            await self.start()
        assert self._loading is not None
        await asyncio.wait((self._loading,), timeout=max(0.0, budget))  # never cancels the loading
        if self._slots.stats().slots:
            return
        if not self._loading.done():
            raise errors.UpstreamTimeout(
                f"{name}: the local model is still loading", deployment=name, code="first_token_timeout"
            )
        failure = None if self._loading.cancelled() else self._loading.exception()
        raise errors.UpstreamServerError(
            f"{name}: the local model could not be loaded ({failure or 'cancelled'})",
            deployment=name,
            code="local_model_unavailable",
        ) from failure

    async def _next(self, generation: Generation[T], timeout: float, code: str) -> T | None:
        name = self.deployment.name
        try:
            item = await generation.next(timeout)
        except TimeoutError:
            what = "answer" if code == _NO_ANSWER else "first token" if code == "first_token_timeout" else "token"
            raise errors.UpstreamTimeout(
                f"{name}: no {what} from the local model within {max(0.0, timeout):.1f}s",
                deployment=name,
                code="first_token_timeout" if code == _NO_ANSWER else code,
            ) from None
        finally:
            timing.received()  # a token, the end, or the model's failure: its time so far
        if isinstance(item, WorkerFailed):
            if item.error is None:
                raise errors.UpstreamServerError(f"{name}: the local model's worker failed", deployment=name)
            raise errors.UpstreamBadRequest(f"{name}: {item.error}", deployment=name)  # llama.cpp's bad input
        return item

    # --- answers --------------------------------------------------------------------------------

    def _kwargs(self, request: ChatRequest) -> dict[str, Any]:
        params = request.params
        kwargs = {k: params[k] for k in _PASSED if k in params}
        max_tokens = request.max_output_tokens
        kwargs["max_tokens"] = max_tokens if max_tokens is not None else 256
        if request.kind == "completion":
            kwargs = {k: v for k, v in kwargs.items() if k not in _NOT_FOR_COMPLETIONS}
        return kwargs

    async def chat(self, request: ChatRequest) -> ChatResult:
        self._one_choice(request)
        budget = self.deployment.timeouts.non_streamed  # the queue, the prompt and every token
        started = time.monotonic()
        tally = _TokenTally()
        whole = any(k in request.params for k in _WHOLE_ONLY)

        def produce(model: Any, stop: threading.Event) -> Iterator[JSON]:
            if whole:
                yield self._generate(model, request)
            else:
                yield from self._chunks(model, request, stop, tally)

        generation = await self._generation(budget, produce, stoppable=not whole)
        items: list[JSON] = []
        try:
            while (item := await self._next(generation, budget - (time.monotonic() - started), _NO_ANSWER)) is not None:
                items.append(item)
        finally:
            generation.stop()  # a no-op once the answer is complete
        body = items[0] if whole else self._assembled(request, items, tally)
        body["model"] = self.deployment.model
        usage = body.get("usage")
        return ChatResult(body=body, usage=openai_usage(usage) if usage else None, model=self.deployment.model)

    def _one_choice(self, request: ChatRequest) -> None:
        """llama.cpp answers with one choice: `n` above 1 is refused rather than silently ignored."""
        if request.n > 1:
            raise errors.UpstreamBadRequest(
                f"{self.deployment.name}: the local model returns one choice per request; n={request.n} "
                "is not supported (send n separate requests).",
                deployment=self.deployment.name,
                param="n",
                code="unsupported_parameter",
            )

    def _generate(self, model: Any, request: ChatRequest) -> JSON:
        """The whole answer in one llama.cpp call (tools, logprobs): cannot stop before max_tokens."""
        if request.kind == "completion":
            result: JSON = model.create_completion(prompt=_prompt(request), **self._kwargs(request))
            return result
        result = model.create_chat_completion(messages=request.messages, **self._kwargs(request))
        return result

    def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        return self._stream(request)

    async def _stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        self._one_choice(request)
        timeouts = self.deployment.timeouts
        started = time.monotonic()
        tally = _TokenTally()

        def produce(model: Any, stop: threading.Event) -> Iterator[JSON]:
            return self._chunks(model, request, stop, tally)

        generation = await self._generation(timeouts.first_token, produce)
        try:
            first_budget = timeouts.first_token - (time.monotonic() - started)
            item = await self._next(generation, first_budget, "first_token_timeout")
            while item is not None:
                item["model"] = self.deployment.model
                yield Chunk(body=item)
                left = timeouts.total - (time.monotonic() - started)
                item = await self._next(generation, min(timeouts.idle, left), "idle_timeout")
            yield self._usage_chunk(tally)
        finally:
            # Synchronous on purpose: a cancelled consumer (a client that hung up) may be cancelled
            # again at every await of its cleanup, so nothing here may depend on one.
            generation.stop()

    def _chunks(self, model: Any, request: ChatRequest, stop: threading.Event, tally: _TokenTally) -> Iterator[JSON]:
        if stop.is_set():
            return  # the request was gone before its turn came
        if isinstance(model, Lane):
            model.watch(stop)  # a batched lane also stops while it waits for its prefill
        started = time.perf_counter()
        if request.kind == "completion":
            prompt = _prompt(request)
            tally.prompt = len(model.tokenize(prompt.encode("utf-8"), add_bos=True))
            stream = model.create_completion(prompt=prompt, stream=True, **self._kwargs(request))
        else:
            stream = model.create_chat_completion(messages=request.messages, stream=True, **self._kwargs(request))
        text: list[str] = []
        finish = None
        for chunk in stream:
            if stop.is_set():
                stream.close()
                break
            for choice in chunk.get("choices", []):
                text.append((choice.get("delta") or {}).get("content") or choice.get("text") or "")
                finish = choice.get("finish_reason") or finish
            yield chunk
        generated = "".join(text)
        tally.completion = len(model.tokenize(generated.encode("utf-8"), add_bos=False)) if generated else 0
        if request.kind == "chat":
            # The context now holds the prompt and the generated tokens, except the last one sampled
            # when generation stopped at max_tokens (it is never evaluated).
            tally.prompt = max(0, int(model.n_tokens) - tally.completion + (1 if finish == "length" else 0))
        tally.seconds = time.perf_counter() - started

    def _assembled(self, request: ChatRequest, chunks: list[JSON], tally: _TokenTally) -> JSON:
        """The non-streamed body from the streamed chunks (generated as a stream so it can be stopped)."""
        first = chunks[0] if chunks else {}
        text: list[str] = []
        finish = None
        for chunk in chunks:
            for choice in chunk.get("choices", []):
                text.append((choice.get("delta") or {}).get("content") or choice.get("text") or "")
                finish = choice.get("finish_reason") or finish
        usage = Usage(input_uncached=tally.prompt, output=tally.completion, source="reported").to_openai()
        answer = "".join(text)
        whole: JSON = {"index": 0, "logprobs": None, "finish_reason": finish}
        if request.kind == "completion":
            whole["text"] = answer
            kind, prefix = "text_completion", "cmpl-local"
        else:
            whole["message"] = {"role": "assistant", "content": answer}
            kind, prefix = "chat.completion", "chatcmpl-local"
        return {
            "id": first.get("id", prefix),
            "object": kind,
            "created": first.get("created", int(time.time())),
            "model": self.deployment.model,
            "choices": [whole],
            "usage": usage,
        }

    def _usage_chunk(self, tally: _TokenTally) -> Chunk:
        usage = Usage(input_uncached=tally.prompt, output=tally.completion, source="reported")
        body: JSON = {
            "id": "local",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": self.deployment.model,
            "choices": [],
            "usage": usage.to_openai(),
        }
        return Chunk(body=body, usage=usage)

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResult:
        raise errors.InvalidRequest(
            f"The model {request.model!r} ({self.deployment.model}) is a chat model and does not serve embeddings.",
            param="model",
        )


def _lanes(settings: LocalSettings, engine: str) -> int:
    """Requests generating at once: `max_concurrency` instances (slots), or sequences (batched)."""
    if engine == "slots":
        return settings.max_concurrency or 1
    return min(settings.max_sequences, settings.max_concurrency or settings.max_sequences)


def _prompt(request: ChatRequest) -> str:
    return request.prompt if isinstance(request.prompt, str) else "".join(map(str, request.prompt or []))


class _TokenTally:
    __slots__ = ("completion", "prompt", "seconds")

    def __init__(self) -> None:
        self.prompt = 0
        self.completion = 0
        self.seconds = 0.0
