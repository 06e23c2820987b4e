"""Prometheus text pages shaped as vLLM's and TGI's /metrics (the metric names, types and labels of
their documentation: docs.vllm.ai "Production Metrics", TGI "Metrics" reference)."""

from __future__ import annotations


def vllm_page(running: float, waiting: float, kv: float = 0.25, *, v1: bool = True) -> str:
    cache = "vllm:kv_cache_usage_perc" if v1 else "vllm:gpu_cache_usage_perc"
    model = 'model_name="meta-llama/Llama-3.1-8B-Instruct",engine="0"'
    return f"""# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{{{model}}} {running}
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{{{model}}} {waiting}
# HELP {cache} KV-cache usage. 1 means 100 percent usage.
# TYPE {cache} gauge
{cache}{{{model}}} {kv}
# HELP vllm:prompt_tokens_total Number of prefill tokens processed.
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{{{model}}} 118237.0
# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{{{model},le="0.04"}} 10.0
vllm:time_to_first_token_seconds_bucket{{{model},le="+Inf"}} 12.0
vllm:time_to_first_token_seconds_count{{{model}}} 12.0
vllm:time_to_first_token_seconds_sum{{{model}}} 0.9
"""


def tgi_page(batch: float, queue: float) -> str:
    return f"""# TYPE tgi_batch_current_size gauge
tgi_batch_current_size {batch}
# TYPE tgi_queue_size gauge
tgi_queue_size {queue}
# TYPE tgi_request_count counter
tgi_request_count 42
"""
