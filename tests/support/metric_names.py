"""Every series name margin's /metrics can serve, read from a real app's registry (not a list kept by
hand), so deploy/ rules and dashboards that name a series margin does not have fail their tests."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from pathlib import Path

import pytest

from margin.app import create_app
from margin.config import parse_config
from margin.storage.memory import MemoryKeyStore

# Cache on and a team budget, so the collectors that only report a configured feature report too.
CONFIG = """
data_dir: {data}
cache: {{enabled: true}}
deployments:
  - {{name: big, provider: fake, model: big, price: {{input: "1", output: "2"}}}}
models:
  - {{name: chat, deployments: [big]}}
budgets:
  - {{scope: "team:a", limit_usd: 10, window: month}}
"""
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
SERIES_NAME = re.compile(r"\bmargin_[a-z0-9_]+")


def served_series_names(data_dir: Path) -> set[str]:
    """The sample names of every metric family margin registers (histograms by their `_bucket`,
    `_sum` and `_count` series; counters by `_total`)."""
    return asyncio.run(_served(data_dir))


async def _served(data_dir: Path) -> set[str]:
    app = create_app(parse_config(CONFIG.format(data=data_dir)), key_store=MemoryKeyStore())
    async with app.router.lifespan_context(app):
        metrics = app.state.gateway.metrics
        await metrics.refresh()
        return {
            family.name + suffix for family in metrics.registry.collect() for suffix in SUFFIXES.get(family.type, ("",))
        }


def names_in(promql: str) -> set[str]:
    """The margin series a PromQL expression reads (recording rules, `margin:...`, are not series)."""
    return set(SERIES_NAME.findall(promql))


def require_binary(name: str) -> str:
    """The path of a Debian-packaged tool; skip without it, except in CI, where it is an install bug
    (scripts/system-packages.txt lists it)."""
    found = shutil.which(name)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must provide {name}: scripts/system-packages.txt lists its package")
        pytest.skip(f"{name} is not installed (apt-get install the package scripts/system-packages.txt names)")
    return found
