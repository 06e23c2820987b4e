"""A model server's own load, read from its Prometheus text: vLLM's `vllm:num_requests_running`,
`vllm:num_requests_waiting` and KV-cache usage (`vllm:kv_cache_usage_perc`, or
`vllm:gpu_cache_usage_perc` before vLLM V1); TGI's `tgi_batch_current_size` and `tgi_queue_size`.

A page that lacks the running or waiting gauge is an error, never zero load: a server that is
loading its weights, or a wrong URL that answers 200, must not read as idle."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from prometheus_client.parser import text_string_to_metric_families

Server = Literal["vllm", "tgi"]

# (running, waiting, KV-cache usage candidates) per server kind; values summed over label sets
# (one series per served model name on vLLM).
NAMES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "vllm": ("vllm:num_requests_running", "vllm:num_requests_waiting",
             ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")),
    "tgi": ("tgi_batch_current_size", "tgi_queue_size", ()),
}  # fmt: skip


class UpstreamMetricsError(ValueError):
    """The page is not Prometheus text, or lacks the load gauges of its server kind."""


@dataclass(frozen=True, slots=True)
class UpstreamLoad:
    running: float
    waiting: float
    kv_cache_usage: float | None  # 0..1, the fullest replica's when summed over several


def parse_load(text: str, server: Server) -> UpstreamLoad:
    running_name, waiting_name, cache_names = NAMES[server]
    values: dict[str, list[float]] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                values.setdefault(sample.name, []).append(float(sample.value))
    except ValueError as exc:
        raise UpstreamMetricsError(f"not Prometheus text: {exc}") from None
    missing = [n for n in (running_name, waiting_name) if n not in values]
    if missing:
        raise UpstreamMetricsError(f"the page has no {', '.join(missing)}")
    cache = next((max(values[n]) for n in cache_names if n in values), None)
    return UpstreamLoad(sum(values[running_name]), sum(values[waiting_name]), cache)
