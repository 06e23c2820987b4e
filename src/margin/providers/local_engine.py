"""The batched local engine: one llama.cpp model and one context for every concurrent request.

A scheduler thread runs the step loop. Each step it
1. drops the sequences whose request went away (their KV cells are freed or kept as a prefix),
2. admits the jobs that arrived (each on its own sequence id, reusing the longest cached prefix),
3. builds one batch: the last sampled token of every decoding sequence, then the prompt tokens of
   the sequences still prefilling, shortest rest first, up to the step's prefill budget
   (`local_budget`: `prefill_chunk` when nothing decodes, else as many as keep the step within
   `decode_stall_factor` times a decode-only step), so a long prompt never stalls the streams
   already decoding,
4. runs one `llama_decode`, and samples one token per sequence whose logits came out, with that
   sequence's own sampler chain (`local_sampling`), handing each token to its job's queue.

Tokens go out as ids; the request's thread turns them into text (stop strings, UTF-8) so the loop
does no per-token work beyond sampling. Sequence id `i` is lane `i` (one request at a time, leased
through the `SlotPool` like the slot engine's instances), with its own KV stream of `n_ctx` cells.
"""

from __future__ import annotations

import ctypes
import logging
import os
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from margin.config.model import LocalSettings
from margin.providers.local_budget import PrefillBudget, prompt_portion
from margin.providers.local_prefix import PrefixCache

log = logging.getLogger("margin.providers.local")
IDLE_WAIT_S = 0.5  # an idle loop re-checks for shutdown this often


@dataclass(frozen=True, slots=True)
class Finished:
    """The last item of a job's queue: why it ended, and how many generated tokens were evaluated."""

    reason: str  # "stop" (end of generation), "length" (max_tokens), "cancelled", or "error"
    error: str | None = None


@dataclass(slots=True, eq=False)
class Job:
    """One sequence's work, handed from a request's thread to the scheduler."""

    seq: int
    tokens: list[int]
    sampler: Any  # llama_cpp._internals.LlamaSampler: sampled and accepted on the scheduler thread
    max_tokens: int
    out: queue.SimpleQueue[int | Finished] = field(default_factory=queue.SimpleQueue)
    cancelled: bool = False  # set by the request's thread; checked by the loop every step


@dataclass(slots=True, eq=False)
class _Running:
    job: Job
    pending: list[int]  # prompt tokens not yet evaluated
    evaluated: list[int]  # tokens whose KV cells this sequence holds
    generated: int = 0
    last: int = -1  # the token sampled last, evaluated in the next step


@dataclass(slots=True)
class EngineStats:
    lanes: int
    active: int  # sequences admitted (prefilling or decoding)
    prefilling: int
    steps: int
    decode_seconds: float  # inside llama_decode
    step_seconds: float  # whole steps (decode included): the rest is the Python loop and sampling
    generated_tokens: int
    prefilled_tokens: int
    prefix_entries: int
    prefix_hits: int
    prefix_misses: int
    prefix_reused_tokens: int
    prefix_evictions: int


def kv_options(settings: LocalSettings) -> dict[str, Any]:
    """`Llama` keyword arguments for `local.kv_cache_type`, for both engines (the same answers).
    q8_0 quantizes K and V (about half the KV memory); llama.cpp needs flash attention for a
    quantized V cache."""
    if settings.kv_cache_type == "f16":
        return {}
    from llama_cpp import GGML_TYPE_Q8_0

    return {"type_k": GGML_TYPE_Q8_0, "type_v": GGML_TYPE_Q8_0, "flash_attn": True}


def open_llama(settings: LocalSettings, model_path: Path) -> Any:
    """The model, its tokenizer and chat template (the engine's own context does the work)."""
    from llama_cpp import Llama

    return Llama(
        model_path=str(model_path), lora_path=settings.lora_path, n_ctx=64, n_batch=8, n_threads=1,
        seed=settings.seed, verbose=False, **kv_options(settings),
    )  # fmt: skip


class BatchedEngine:
    def __init__(self, settings: LocalSettings, model_path: Path, *, lanes: int) -> None:
        import llama_cpp
        from llama_cpp import _internals

        self._lib = llama_cpp
        self.llama = open_llama(settings, model_path)
        self.lanes = lanes
        self.n_ctx = settings.n_ctx  # the longest one sequence may grow (prompt and answer)
        self.chunk = settings.prefill_chunk
        self.budget = PrefillBudget(settings.prefill_chunk, settings.decode_stall_factor)
        self._shape = (0, 0)  # this step's (decoding sequences, prompt tokens), for the budget
        self._cap = settings.prefill_chunk + lanes  # tokens in one batch
        threads = settings.n_threads or max(1, (os.cpu_count() or 2) // 2)
        # The Llama's own settings (flash attention, KV types: kv_options), so answers match the slot engine.
        params = llama_cpp.llama_context_params.from_buffer_copy(self.llama.context_params)
        params.n_ctx = settings.n_ctx * lanes
        params.n_batch = params.n_ubatch = self._cap
        params.n_seq_max = lanes  # each sequence its own KV stream of n_ctx cells (see local_prefix)
        params.kv_unified = False
        params.n_threads = params.n_threads_batch = threads
        params.no_perf = True
        self._context: Any = _internals.LlamaContext(model=self.llama._model, params=params, verbose=False)
        self._ctx = self._context.ctx
        if self.llama._lora_adapter is not None:  # local.lora_path: loaded with the model, applied here too
            adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(self.llama._lora_adapter)
            if llama_cpp.llama_set_adapters_lora(self._ctx, adapters, 1, (ctypes.c_float * 1)(self.llama.lora_scale)):
                raise RuntimeError(f"llama.cpp could not apply the LoRA adapter {settings.lora_path}")
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self._vocab = self.llama._model.vocab
        self._batch = llama_cpp.llama_batch_init(self._cap, 0, 1)
        self.prefixes = PrefixCache(min(settings.prefix_cache, lanes), copy=self._copy, trim=self._trim)
        self._inbox: deque[Job] = deque()
        self._wake = threading.Event()
        self._running: dict[int, _Running] = {}
        self._closing = False
        self._steps = self._generated = self._prefilled = 0
        self._decode_s = self._step_s = 0.0
        self._thread = threading.Thread(target=self._loop, name="margin-llama-batch", daemon=True)
        self._thread.start()

    # --- from other threads -------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        """The loop runs (False once it failed or was closed)."""
        return not self._closing and self._thread.is_alive()

    def submit(self, job: Job) -> None:
        self._inbox.append(job)
        self._wake.set()
        if self._closing:  # the loop is gone or going: nobody else will answer
            self._fail_inbox("the local model's engine is not running")

    def cancel(self, job: Job) -> None:
        job.cancelled = True
        self._wake.set()

    def close(self) -> None:
        """Stop the loop; it frees the context itself once its current step is done."""
        self._closing = True
        self._wake.set()

    def stats(self) -> EngineStats:
        running = list(self._running.values())
        prefixes = self.prefixes
        return EngineStats(
            lanes=self.lanes,
            active=len(running),
            prefilling=sum(1 for r in running if r.pending),
            steps=self._steps,
            decode_seconds=self._decode_s,
            step_seconds=self._step_s,
            generated_tokens=self._generated,
            prefilled_tokens=self._prefilled,
            prefix_entries=len(prefixes),
            prefix_hits=prefixes.hits,
            prefix_misses=prefixes.misses,
            prefix_reused_tokens=prefixes.reused_tokens,
            prefix_evictions=prefixes.evictions,
        )

    # --- the scheduler thread -----------------------------------------------------------------------

    def _loop(self) -> None:
        try:
            while not self._closing:
                if not self._running and not self._inbox:
                    self._wake.wait(IDLE_WAIT_S)
                    self._wake.clear()
                    continue
                started = time.perf_counter()
                self._step()
                self._steps += 1
                self._step_s += time.perf_counter() - started
        except Exception:  # a bug or a llama.cpp failure: every request learns at once
            log.exception("the batched local engine failed")
            self._fail_all("the local model's engine failed")
        finally:
            self._closing = True
            self._fail_all("the local model is shutting down")
            self._lib.llama_batch_free(self._batch)
            self._context.close()

    def _step(self) -> None:
        for running in [r for r in self._running.values() if r.job.cancelled]:
            self._end(running, Finished("cancelled"))
        while self._inbox:
            self._admit(self._inbox.popleft())
        sampled = self._fill()
        if not sampled and not self._batch.n_tokens:
            return
        if not self._decode():
            return
        for index, running in sampled:
            self._sample(index, running)

    def _admit(self, job: Job) -> None:
        if job.cancelled:
            job.out.put(Finished("cancelled"))
            return
        reused = self.prefixes.lookup(job.tokens, job.seq)
        self._running[job.seq] = _Running(job, pending=job.tokens[reused:], evaluated=job.tokens[:reused])

    def _fill(self) -> list[tuple[int, _Running]]:
        """Fill the batch; returns (batch index, sequence) for every sequence that samples this step."""
        batch, n = self._batch, 0
        sampled: list[tuple[int, _Running]] = []
        for running in self._running.values():
            if not running.pending:
                self._put(n, running.last, len(running.evaluated), running.job.seq, True)
                running.evaluated.append(running.last)
                sampled.append((n, running))
                n += 1
        decoding, budget = n, self.budget.tokens(n)
        # shortest rest first: a short prompt's first token does not wait behind a long prompt's prefill
        for running in sorted((r for r in self._running.values() if r.pending), key=lambda r: len(r.pending)):
            count = prompt_portion(len(running.pending), budget, n - decoding, decoding > 0, self.chunk)
            if not count:
                continue
            take, start = running.pending[:count], len(running.evaluated)
            for offset, token in enumerate(take):
                self._put(n + offset, token, start + offset, running.job.seq, False)
            n += count
            budget -= count
            running.evaluated.extend(take)
            del running.pending[:count]
            self._prefilled += count
            if not running.pending:
                batch.logits[n - 1] = 1
                sampled.append((n - 1, running))
        batch.n_tokens = n
        self._shape = (decoding, n - decoding)
        return sampled

    def _put(self, i: int, token: int, pos: int, seq: int, logits: bool) -> None:
        batch = self._batch
        batch.token[i] = token
        batch.pos[i] = pos
        batch.n_seq_id[i] = 1
        batch.seq_id[i][0] = seq
        batch.logits[i] = logits

    def _decode(self) -> bool:
        """One llama_decode; a full KV cache gives up cached prefixes, then the newest sequence."""
        while True:
            started = time.perf_counter()
            code = self._lib.llama_decode(self._ctx, self._batch)
            seconds = time.perf_counter() - started
            self._decode_s += seconds
            if code == 0:
                self.budget.observe(*self._shape, seconds)
                return True
            if code == 1 and self.prefixes.evict():
                continue
            log.error("llama_decode failed (%d) with %d tokens in the batch", code, self._batch.n_tokens)
            # Nothing of this step was evaluated, and the sequences' bookkeeping says it was: end them all.
            for running in list(self._running.values()):
                self._end(running, Finished("error", "the local model could not evaluate the batch"), keep=False)
            return False

    def _sample(self, index: int, running: _Running) -> None:
        job = running.job
        token = int(self._lib.llama_sampler_sample(job.sampler.sampler, self._ctx, index))
        running.generated += 1
        self._generated += 1
        if self._lib.llama_vocab_is_eog(self._vocab, token):
            self._end(running, Finished("stop"))
            return
        job.out.put(token)
        if running.generated >= job.max_tokens:
            self._end(running, Finished("length"))
        else:
            running.last = token

    def _end(self, running: _Running, outcome: Finished, *, keep: bool = True) -> None:
        """Free the sequence (its cells kept as a cached prefix), then tell its request."""
        seq = running.job.seq
        del self._running[seq]
        if keep:
            self.prefixes.keep(seq, running.evaluated)
        else:
            self._drop(seq)
        running.job.out.put(outcome)

    def _fail_all(self, message: str) -> None:
        for running in list(self._running.values()):
            self._end(running, Finished("error", message), keep=False)
        self._fail_inbox(message)

    def _fail_inbox(self, message: str) -> None:
        while True:
            try:
                job = self._inbox.popleft()
            except IndexError:
                return
            job.out.put(Finished("error", message))

    def _copy(self, src: int, dst: int) -> None:
        self._lib.llama_memory_seq_cp(self._memory, src, dst, -1, -1)

    def _trim(self, seq: int, keep: int) -> None:
        self._lib.llama_memory_seq_rm(self._memory, seq, keep, -1)

    def _drop(self, seq: int) -> None:
        self._trim(seq, 0)

    def seq_pos_max(self, seq: int) -> int:
        """The last position a sequence holds cells for (-1: none); tests check that a sequence was freed."""
        return int(self._lib.llama_memory_seq_pos_max(self._memory, seq))
