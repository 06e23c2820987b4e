"""all-MiniLM-L6-v2 in-process: the embedded default's local embedding model (extra `embed`).

The same int8 ONNX embedder the semantic cache uses, served as an OpenAI `/v1/embeddings` model.
Embedding runs on worker threads (one request per thread at a time) behind a bounded queue, so the
event loop keeps answering while the model works and an overflowing queue is a clear 503 the
router can spill from. Usage is counted by the model's own WordPiece tokenizer.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib.util
import math
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np

from margin import errors
from margin.config.model import DeploymentConfig, LocalEmbedSettings
from margin.embedding.minilm import INSTALL_HINT, MiniLMEmbedder, find_model_file, load_tokenizer
from margin.embedding.protocol import EmbedderUnavailableError, Matrix
from margin.providers.token_count import OffLoopCounter
from margin.types import JSON, ChatRequest, ChatResult, Chunk, EmbeddingRequest, EmbeddingResult, Usage

# sentence-transformers' max_seq_length for all-MiniLM-L6-v2 (it was trained on at most 128); the
# BERT position table ends at 512, so nothing longer can be embedded at all.
DEFAULT_MAX_INPUT_TOKENS = 256
MODEL_MAX_POSITIONS = 512
EncodingFormat = Literal["float", "base64"]
# What a failed load or model call raises before onnxruntime is imported (see `_model_errors`).
_BASE_ERRORS: tuple[type[Exception], ...] = (RuntimeError, OSError, ValueError)


class LocalEmbedProvider:
    def __init__(self, deployment: DeploymentConfig) -> None:
        self.deployment = deployment
        self.settings = deployment.local_embed or LocalEmbedSettings()
        self.max_input_tokens = deployment.context_window or DEFAULT_MAX_INPUT_TOKENS
        if self.max_input_tokens > MODEL_MAX_POSITIONS:
            raise errors.ConfigError(
                f"deployment {deployment.name!r}: context_window {self.max_input_tokens} is over MiniLM's "
                f"{MODEL_MAX_POSITIONS} positions"
            )
        model_path = _model_path(deployment.name, self.settings)
        self._embedder = MiniLMEmbedder(
            max_tokens=self.max_input_tokens, threads=self.settings.threads, model_path=model_path
        )
        self._executor = ThreadPoolExecutor(self.settings.max_concurrency, thread_name_prefix="margin-embed")
        self._threads = asyncio.Semaphore(self.settings.max_concurrency)  # one request per thread
        self._waiting = 0
        self._loading: asyncio.Task[None] | None = None
        self._tokenizer: Any = None  # tokenizers.Tokenizer, without truncation: counts the whole input
        # Counts never stall the event loop (margin.providers.token_count): the window is per input,
        # so there is no prompt-wide bound, but long inputs are counted on a worker thread.
        self._counter = OffLoopCounter(None, fallback=_estimate)
        self._errors = _BASE_ERRORS

    @property
    def native_completions(self) -> bool:
        return False

    @property
    def dim(self) -> int:
        return self._embedder.dim

    async def start(self) -> None:
        # Load in the background: the server is up (and /healthz answers) before the weights are in.
        if self._loading is None:
            self._loading = asyncio.create_task(self._load(), name=f"load-{self.deployment.name}")

    async def _load(self) -> None:
        loop = asyncio.get_running_loop()
        self._tokenizer = await loop.run_in_executor(self._executor, self._open_model)
        self._counter.attach(self._count_one, count_many=self._count_many)

    def _open_model(self) -> Any:
        self._errors = _model_errors()
        self._embedder.load()
        return load_tokenizer()

    async def aclose(self) -> None:
        if self._loading is not None and not self._loading.done():
            self._loading.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def count_tokens(self, text: str) -> int:
        """WordPiece tokens, [CLS] and [SEP] included: what the model runs on and what usage reports."""
        return self._counter.count(text)

    async def count_tokens_ahead(self, texts: Sequence[str]) -> int:
        """All of `texts`' tokens, counted off the event loop (`encode_batch` releases the GIL)."""
        return await self._counter.count_ahead(texts)

    def _count_one(self, text: str) -> int:
        return len(self._tokenizer.encode(text).ids)

    def _count_many(self, texts: Sequence[str]) -> int:
        return sum(len(e.ids) for e in self._tokenizer.encode_batch(list(texts)))

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResult:
        encoding = embedding_options(request.params, self.dim, self.deployment.model)
        texts = text_inputs(request.inputs, self.deployment.model)
        vectors, counts = await self._run(texts)
        body = embedding_body(vectors, encoding, self.deployment.model, sum(counts))
        usage = Usage(input_uncached=sum(counts), source="reported")
        return EmbeddingResult(body=body, usage=usage, model=self.deployment.model)

    async def _run(self, texts: list[str]) -> tuple[Matrix, list[int]]:
        await self._acquire()
        loop = asyncio.get_running_loop()
        try:
            work = self._executor.submit(self._embed_blocking, texts)
        except RuntimeError as exc:  # the executor is shut down: the gateway is stopping
            self._threads.release()
            raise errors.ServiceUnavailable(f"{self.deployment.name}: shutting down") from exc

        def release(_: Future[tuple[Matrix, list[int]]]) -> None:
            # The thread is free only when the work is done (a request that gave up waiting does not
            # free it early), or when the work was cancelled before it started.
            with contextlib.suppress(RuntimeError):  # the loop closed at shutdown: nothing to wake
                loop.call_soon_threadsafe(self._threads.release)

        work.add_done_callback(release)
        try:
            return await asyncio.wrap_future(work)
        except self._errors as exc:
            raise errors.UpstreamServerError(
                f"{self.deployment.name}: the embedding model failed: {type(exc).__name__}: {exc}",
                deployment=self.deployment.name,
            ) from exc

    def _embed_blocking(self, texts: list[str]) -> tuple[Matrix, list[int]]:
        counts = [len(e.ids) for e in self._tokenizer.encode_batch(texts)]
        for index, count in enumerate(counts):
            if count > self.max_input_tokens:
                # OpenAI refuses an over-long input rather than embedding a truncated one; so does this.
                raise errors.ContextLengthExceeded(
                    f"input[{index}] is {count} tokens; {self.deployment.model} embeds at most "
                    f"{self.max_input_tokens} tokens per input. Shorten or split it.",
                    param="input",
                    deployment=self.deployment.name,
                )
        return self._embedder.embed(texts), counts

    async def _acquire(self) -> None:
        loaded = self._loading is not None and self._loading.done()
        if loaded and self._threads.locked() and self._waiting >= self.settings.max_queue:
            raise errors.CapacityExceeded(
                f"{self.deployment.name}: the local embedding model's queue is full; retry shortly",
                headers={"retry-after": "1"},
            )
        self._waiting += 1
        try:
            await self._loaded()
            await self._threads.acquire()
        finally:
            self._waiting -= 1

    async def _loaded(self) -> None:
        if self._loading is None:
            await self.start()
        assert self._loading is not None
        try:
            await asyncio.shield(self._loading)
        except self._errors as exc:
            raise errors.UpstreamModelGone(
                f"{self.deployment.name}: the embedding model did not load: {exc}", deployment=self.deployment.name
            ) from exc

    async def chat(self, request: ChatRequest) -> ChatResult:
        raise self._not_chat(request)

    def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        return _Refused(self._not_chat(request))

    def _not_chat(self, request: ChatRequest) -> errors.InvalidRequest:
        return errors.InvalidRequest(
            f"The model {request.model!r} ({self.deployment.model}) is an embedding model; use /v1/embeddings.",
            param="model",
        )

    async def health(self) -> bool:
        return self._loading is not None and self._loading.done() and self._loading.exception() is None


def _estimate(text: str) -> int:
    """Before the tokenizer is loaded, or for a long text counted on the loop: the documented
    estimate (one token per 4 bytes), plus the two markers."""
    return math.ceil(len(text.encode("utf-8")) / 4) + 2


def _model_path(name: str, settings: LocalEmbedSettings) -> Path:
    """The ONNX graph to load; a missing extra is a start-up error that says what to install."""
    missing = [m for m in ("onnxruntime", "tokenizers") if importlib.util.find_spec(m) is None]
    try:
        if missing:
            raise EmbedderUnavailableError(f"{', '.join(missing)} not installed; {INSTALL_HINT}")
        return Path(settings.model_path).expanduser() if settings.model_path else find_model_file()
    except EmbedderUnavailableError as exc:
        raise errors.ConfigError(f"deployment {name!r}: {exc}") from exc


def _model_errors() -> tuple[type[Exception], ...]:
    """onnxruntime's own exception classes (Fail, InvalidGraph, ...) derive from Exception directly,
    so they are named by collecting them from its binding module."""
    try:
        state = importlib.import_module("onnxruntime.capi.onnxruntime_pybind11_state")
    except ImportError:
        return _BASE_ERRORS
    found = [c for c in vars(state).values() if isinstance(c, type) and issubclass(c, Exception)]
    return (*_BASE_ERRORS, *found)


def embedding_options(params: JSON, dim: int, model: str) -> EncodingFormat:
    """The response encoding; refuses what this model cannot honour, as OpenAI does (400)."""
    encoding = params.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise errors.InvalidRequest(
            f"encoding_format must be 'float' or 'base64', not {encoding!r}.", param="encoding_format"
        )
    dimensions = params.get("dimensions")
    if dimensions is not None and (isinstance(dimensions, bool) or dimensions != dim):
        # OpenAI shortens only models trained for it (text-embedding-3); MiniLM was not, and cutting
        # its vectors would silently lose meaning, so only its own size is accepted.
        raise errors.InvalidRequest(
            f"{model} returns {dim}-dimensional vectors and cannot shorten them: omit dimensions or set it to {dim}.",
            param="dimensions",
        )
    return "base64" if encoding == "base64" else "float"


def text_inputs(inputs: Sequence[object], model: str) -> list[str]:
    if all(isinstance(item, str) for item in inputs):
        return [str(item) for item in inputs]
    raise errors.InvalidRequest(
        f"{model} embeds text only: token arrays are ids of the client's tokenizer (tiktoken for OpenAI "
        "models), which mean nothing to MiniLM's vocabulary. Send the text instead.",
        param="input",
    )


def embedding_body(vectors: Matrix, encoding: EncodingFormat, model: str, prompt_tokens: int) -> JSON:
    """OpenAI's embeddings response. base64 is the little-endian float32 bytes of each vector, so it
    decodes to exactly the floats the `float` format lists."""
    little_endian = np.asarray(vectors, dtype="<f4")
    data = [
        {
            "object": "embedding",
            "index": index,
            "embedding": base64.b64encode(row.tobytes()).decode("ascii") if encoding == "base64" else row.tolist(),
        }
        for index, row in enumerate(little_endian)
    ]
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }


class _Refused:
    """A stream whose first step raises: an embedding model has nothing to stream."""

    def __init__(self, error: errors.MarginError) -> None:
        self.error = error

    def __aiter__(self) -> _Refused:
        return self

    async def __anext__(self) -> Chunk:
        raise self.error
