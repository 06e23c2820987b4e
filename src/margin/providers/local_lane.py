"""One sequence of the batched local engine, as the provider and llama-cpp-python's chat handlers see it.

A `Lane` is what the `SlotPool` leases to one request at a time (the slot engine leases a whole
`llama_cpp.Llama`). It answers the calls those make on a `Llama`: `create_chat_completion` runs the
model's own chat handler (the same template, stop words, tool and `response_format` grammars as
before) with the lane as its `llama`, and the handler's `create_completion` lands here: the prompt's
tokens and a sampler chain go to the engine as a `Job`, and the tokens coming back are turned into
text-completion chunks on the request's thread, in the shape `Llama.create_completion` gives.
"""

from __future__ import annotations

import queue
import random
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

from margin import errors
from margin.providers.local_engine import BatchedEngine, Finished, Job
from margin.providers.local_sampling import Sampling, TextStream, build_sampler

POLL_S = 0.05  # how often a request waiting for its next token checks whether it was told to stop
# `Llama.create_chat_completion`'s defaults: a request that leaves a parameter out samples as before.
CHAT_DEFAULTS: dict[str, Any] = {
    "temperature": 0.2,
    "top_p": 0.95,
    "top_k": 40,
    "min_p": 0.05,
    "typical_p": 1.0,
    "stop": [],
    "seed": None,
    "response_format": None,
    "max_tokens": None,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
    "repeat_penalty": 1.0,
    "logprobs": None,
    "top_logprobs": None,
    "tools": None,
    "tool_choice": None,
}


class Lane:
    def __init__(self, engine: BatchedEngine, seq: int) -> None:
        self.engine = engine
        self.seq = seq
        self.llama = engine.llama
        self.verbose = False
        self.n_tokens = 0  # after a generation: prompt and evaluated answer tokens, as `Llama.n_tokens`
        self._seed = int(self.llama._seed)
        self.generated = 0  # after a generation: the tokens it produced
        self._stop: threading.Event | None = None

    def watch(self, stop: threading.Event) -> None:
        """The event the request sets to stop; checked while waiting for tokens (even mid-prefill)."""
        self._stop = stop

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        tokens: list[int] = self.llama.tokenize(text, add_bos=add_bos, special=special)
        return tokens

    def detokenize(self, tokens: list[int], prev_tokens: list[int] | None = None, special: bool = False) -> bytes:
        data: bytes = self.llama.detokenize(tokens, special=special)
        return data

    def create_chat_completion(self, messages: list[Any], stream: bool = False, **kwargs: Any) -> Any:
        from llama_cpp import llama_chat_format

        llama = self.llama
        handler: Any = (
            llama.chat_handler
            or llama._chat_handlers.get(llama.chat_format)
            or llama_chat_format.get_chat_completion_handler(llama.chat_format)
        )
        return handler(llama=self, messages=messages, stream=stream, **{**CHAT_DEFAULTS, **kwargs})

    def create_completion(self, prompt: str | list[int], stream: bool = False, **kwargs: Any) -> Any:
        """`Llama.create_completion` on the engine (its defaults; logprobs refused as before)."""
        tokens = self._prompt_tokens(prompt)
        if len(tokens) >= self.engine.n_ctx:
            raise ValueError(f"Requested tokens ({len(tokens)}) exceed context window of {self.engine.n_ctx}")
        if kwargs.get("logprobs") is not None:
            raise ValueError("logprobs is not supported for models created with logits_all=False")
        max_tokens = kwargs.get("max_tokens", 16)
        if max_tokens is None or max_tokens <= 0:
            max_tokens = self.engine.n_ctx - len(tokens)
        max_tokens = min(max_tokens, self.engine.n_ctx - len(tokens))
        sampler = build_sampler(self.llama, self._sampling(kwargs), kwargs.get("grammar"))
        stop = kwargs.get("stop") or []
        job = Job(self.seq, tokens, sampler, max_tokens)
        chunks = self._chunks(job, [stop] if isinstance(stop, str) else list(stop), kwargs.get("model"))
        return chunks if stream else self._whole(chunks, len(tokens))

    def _prompt_tokens(self, prompt: str | list[int]) -> list[int]:
        if not isinstance(prompt, str):
            return list(prompt)
        bos = [self.llama.token_bos()] if self.llama._model.add_bos_token() else []
        return bos + (self.tokenize(prompt.encode("utf-8"), add_bos=False, special=True) if prompt else [])

    def _sampling(self, kwargs: dict[str, Any]) -> Sampling:
        seed = kwargs.get("seed")
        self._seed = int(seed) if seed is not None else random.Random(self._seed).randint(0, 2**32)
        fields = ("top_p", "top_k", "min_p", "typical_p", "presence_penalty", "frequency_penalty", "repeat_penalty")
        given = {k: kwargs[k] for k in fields if kwargs.get(k) is not None}
        temperature = kwargs.get("temperature")
        return Sampling(temperature=0.8 if temperature is None else temperature, seed=self._seed, **given)

    def _chunks(self, job: Job, stops: list[str], model: str | None) -> Iterator[dict[str, Any]]:
        """Submit the job and turn its tokens into completion chunks; a closed or stopped reader
        cancels the job (its sequence is freed at the engine's next step)."""
        self.engine.submit(job)
        text = TextStream(stops)
        head: dict[str, Any] = {"id": f"cmpl-{uuid.uuid4()}", "object": "text_completion", "created": int(time.time())}
        head["model"] = model or self.llama.model_path
        generated, finish, self.generated = 0, None, 0
        try:
            while (item := self._next(job)) is not None:
                if isinstance(item, Finished):
                    finish = self._finished(item)
                    piece = text.flush()
                else:
                    generated += 1
                    piece = text.feed(self.llama.detokenize([item]))
                    if text.stopped:
                        self.engine.cancel(job)
                        finish = "stop"
                if piece:
                    yield {**head, "choices": [_choice(piece, None)]}
                if finish is not None:
                    self.n_tokens = len(job.tokens) + generated - (0 if item == Finished("stop") else 1)
                    self.generated = generated
                    yield {**head, "choices": [_choice("", finish)]}
                    return
        finally:
            if finish is None:
                self.engine.cancel(job)

    def _next(self, job: Job) -> int | Finished | None:
        """The job's next item; None once the request said stop."""
        while True:
            try:
                return job.out.get(timeout=POLL_S)
            except queue.Empty:
                if self._stop is not None and self._stop.is_set():
                    return None

    def _whole(self, chunks: Iterator[dict[str, Any]], prompt_tokens: int) -> dict[str, Any]:
        """A non-streamed completion from the chunks (generated to the end)."""
        parts: list[str] = []
        head: dict[str, Any] = {}
        finish = None
        for chunk in chunks:
            head = chunk
            parts.append(chunk["choices"][0]["text"])
            finish = chunk["choices"][0]["finish_reason"] or finish
        total = prompt_tokens + self.generated
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": self.generated, "total_tokens": total}
        body: dict[str, Any] = {k: head[k] for k in ("id", "object", "created", "model") if k in head}
        return {**body, "choices": [_choice("".join(parts), finish)], "usage": usage}

    @staticmethod
    def _finished(item: Finished) -> str:
        if item.reason == "error":  # the engine's failure, not the request's: a server error that fails over
            raise errors.UpstreamServerError(item.error or "the local model failed")
        return "length" if item.reason == "length" else "stop"


def _choice(text: str, finish: str | None) -> dict[str, Any]:
    return {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}
