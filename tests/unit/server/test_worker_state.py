"""What `margin serve --workers N` shares without Redis: the circuit store picked for the app, and
MARGIN_WORKERS carrying `--workers` into the workers' config (docs/workers.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from margin.app import shared_circuits
from margin.config.environment import WORKERS
from margin.config.model import MarginConfig
from margin.errors import ConfigError
from margin.factory import config_from_env
from margin.resilience.shared import SharedCircuits
from margin.storage.limits_stores import per_worker_counters
from margin.storage.sqlite.circuits import SqliteCircuitScripts


def _config(**sections: object) -> MarginConfig:
    return MarginConfig.model_validate(sections)


async def test_one_worker_keeps_its_circuits_in_memory(tmp_path: Path) -> None:
    assert shared_circuits(_config(), tmp_path) is None


async def test_several_workers_share_circuits_in_the_data_dir(tmp_path: Path) -> None:
    circuits = shared_circuits(_config(server={"workers": 2}), tmp_path)
    assert isinstance(circuits, SharedCircuits) and isinstance(circuits.remote, SqliteCircuitScripts)
    assert circuits.remote.worker.path == str(tmp_path / "circuits.db")
    await circuits.remote.close()


def test_the_workers_count_reaches_the_workers_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MARGIN_CONFIG", raising=False)
    monkeypatch.setenv(WORKERS.name, "3")
    assert config_from_env().server.workers == 3
    monkeypatch.setenv(WORKERS.name, "0")
    with pytest.raises(ConfigError, match="MARGIN_WORKERS"):
        config_from_env()


def test_counters_in_each_workers_memory_are_refused() -> None:
    assert per_worker_counters(_config(server={"workers": 2})) is None  # the database file: shared
    assert per_worker_counters(_config(limits={"counters": "memory"})) is None  # one worker
    assert "each worker's memory" in (
        per_worker_counters(_config(server={"workers": 2}, limits={"counters": "memory"})) or ""
    )
    memory_db = _config(server={"workers": 2}, database={"url": "sqlite:///:memory:"})
    assert "server.workers is 2" in (per_worker_counters(memory_db) or "")
