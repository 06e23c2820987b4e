"""Which client fields reach an upstream: credential- and routing-shaped ones never, by default."""

from __future__ import annotations

import pytest

from margin.config.model import PassthroughConfig
from margin.translate.passthrough import Passthrough

# Parameters of OpenAI's chat, completions and embeddings APIs, Anthropic's Messages API and the
# common self-hosted servers (vLLM, llama.cpp server, Ollama): none of them may be dropped.
KNOWN = [
    "model", "messages", "prompt", "audio", "frequency_penalty", "function_call", "functions", "logit_bias",
    "logprobs", "max_completion_tokens", "max_tokens", "metadata", "modalities", "n", "parallel_tool_calls",
    "prediction", "presence_penalty", "prompt_cache_key", "reasoning_effort", "response_format",
    "safety_identifier", "seed", "service_tier", "stop", "store", "stream", "stream_options", "temperature",
    "tool_choice", "tools", "top_logprobs", "top_p", "user", "verbosity", "web_search_options", "input",
    "dimensions", "encoding_format", "system", "stop_sequences", "thinking", "top_k", "container",
    "mcp_servers", "output_config", "repetition_penalty", "min_p", "min_tokens", "skip_special_tokens",
    "stop_token_ids", "guided_json", "chat_template_kwargs", "keep_alive", "mirostat", "n_predict",
    "cache_prompt", "typical_p", "best_of", "suffix", "echo",
]  # fmt: skip
DENIED = [
    "api_key", "API-Key", "apiKey", "openai_api_key", "x-api-key", "access_token", "session_token", "token",
    "secret", "client_secret", "password", "credentials", "vertex_credentials", "authorization", "auth",
    "private_key", "aws_access_key_id", "aws_secret_access_key", "api_base", "base_url", "openai_base_url",
    "api_url", "api_version", "extra_headers", "headers", "extra_query", "extra_body", "custom_llm_provider",
    "litellm_params", "organization", "proxy", "fallbacks", "context_window_fallbacks", "azure_ad_token",
    "region_name", "deployment_id", "user_config", "cookie",
]  # fmt: skip


@pytest.mark.parametrize("name", KNOWN)
def test_the_apis_own_parameters_pass(name: str) -> None:
    assert not Passthrough().denies(name)


@pytest.mark.parametrize("name", DENIED)
def test_credential_and_routing_fields_are_dropped_by_default(name: str) -> None:
    assert Passthrough().denies(name)


def test_a_deployment_extends_the_list_or_exempts_fields_from_it() -> None:
    custom = Passthrough.of(PassthroughConfig(deny=["repetition_*"], allow=["api_base", "AWS_*"]))
    assert custom.denies("repetition_penalty") and custom.denies("api_key")
    assert not custom.denies("api_base") and not custom.denies("aws_region_name") and not custom.denies("top_k")


def test_filter_keeps_the_body_when_nothing_is_denied_and_never_changes_it() -> None:
    body = {"model": "m", "top_k": 3}
    assert Passthrough().filter(body) is body
    steered = {"model": "m", "api_key": "sk-x", "Extra-Headers": {}, "top_k": 3}
    assert Passthrough().filter(steered) == {"model": "m", "top_k": 3}
    assert "api_key" in steered  # the caller's dict is untouched
