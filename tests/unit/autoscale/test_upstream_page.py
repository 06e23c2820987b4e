"""Reading a model server's own load from its /metrics text."""

from __future__ import annotations

import pytest

from margin.autoscale.upstream import UpstreamMetricsError, parse_load
from tests.unit.autoscale.vllm_page import tgi_page, vllm_page


def test_vllm_v1_page_gives_running_waiting_and_kv_cache() -> None:
    load = parse_load(vllm_page(running=7, waiting=3, kv=0.62), "vllm")
    assert (load.running, load.waiting, load.kv_cache_usage) == (7.0, 3.0, 0.62)


def test_vllm_v0_page_reads_gpu_cache_usage() -> None:
    assert parse_load(vllm_page(1, 0, kv=0.5, v1=False), "vllm").kv_cache_usage == 0.5


def test_tgi_page_gives_batch_and_queue() -> None:
    load = parse_load(tgi_page(batch=4, queue=9), "tgi")
    assert (load.running, load.waiting, load.kv_cache_usage) == (4.0, 9.0, None)


def test_a_page_without_the_load_gauges_is_an_error_not_zero_load() -> None:
    with pytest.raises(UpstreamMetricsError, match="vllm:num_requests_waiting"):
        parse_load("# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running 0\n", "vllm")
    with pytest.raises(UpstreamMetricsError, match="no vllm:num_requests_running"):
        parse_load(tgi_page(1, 1), "vllm")  # the wrong server kind configured


def test_text_that_is_not_prometheus_is_an_error() -> None:
    with pytest.raises(UpstreamMetricsError):
        parse_load("<html>loading weights</html>", "vllm")
