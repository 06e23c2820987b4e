"""The base model for training: the local tier's GGUF, loaded with transformers' own GGUF support
(dequantised to float32; nothing is downloaded), and its Hugging Face config written beside the job
for llama.cpp's adapter conversion (`convert_lora_to_gguf.py --base DIR`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from margin.config import local_weights
from margin.errors import ConfigError
from margin.tuning.errors import TrainingError

LOCAL = "local"


def default_model_path() -> Path:
    """The local tier's default GGUF (margin.config.local_weights), as a training error when absent."""
    try:
        return local_weights.default_model_path()
    except ConfigError as exc:
        raise TrainingError(f"base `local`: {exc}") from exc


def resolve_base(base: str) -> Path:
    """`local`: the local tier's default GGUF (SmolLM2); else a GGUF file's path."""
    path = default_model_path() if base == LOCAL else Path(base).expanduser()
    if not path.is_file():
        raise TrainingError(f"base model {base!r}: no GGUF file at {path}")
    if path.suffix.lower() != ".gguf":
        raise TrainingError(f"base model {base!r}: {path.name} is not a .gguf file")
    return path


def load_base(path: Path) -> tuple[Any, Any]:
    """(model, tokenizer) from the GGUF, float32, ready for PEFT; TrainingError naming the file when
    transformers cannot read it."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model: Any = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
        raise TrainingError(f"base model {path}: transformers cannot load it ({_short(exc)})") from exc
    # The weights were dequantised on load: the model is a plain float32 one. Left marked as GGUF-
    # quantised, the trainer refuses to train it.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.architectures = [type(model).__name__]
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def save_base_config(model: Any, tokenizer: Any, directory: Path) -> None:
    """config.json and the tokenizer files: what the adapter conversion needs of the base (no weights)."""
    directory.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(directory)
    tokenizer.save_pretrained(directory)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}"
