"""Run the installed `margin` console script (the one `pip install` / `uv sync` put beside the
interpreter), as a user would, on a data directory of the test's own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def margin_script() -> Path:
    """The console script next to this interpreter (`.venv/bin/margin`); an install without it is a
    broken install, so this fails rather than falling back to `python -m margin`."""
    script = Path(sys.executable).parent / ("margin.exe" if os.name == "nt" else "margin")
    if not script.is_file():
        raise FileNotFoundError(f"no installed `margin` entry point at {script}: install the package (uv sync)")
    return script


def cli_env(data_dir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The process environment with margin's own variables replaced: a fresh data dir, no config
    file, no provider keys leaking in from the machine running the tests."""
    inherited = {
        name: value
        for name, value in os.environ.items()
        if name not in {"MARGIN_CONFIG", "MARGIN_ADMIN_KEY", "OPENAI_API_KEY", "ANTHROPIC_API_KEY"}
    }
    return {**inherited, "MARGIN_DATA_DIR": str(data_dir), **(extra or {})}


def run_margin(
    *args: str | Path,
    data_dir: Path,
    env: dict[str, str] | None = None,
    timeout: float = 120.0,
) -> subprocess.CompletedProcess[str]:
    """`margin ARGS...` to completion; stdout and stderr kept apart. The caller checks the exit code."""
    return subprocess.run(
        [str(margin_script()), *(str(a) for a in args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(data_dir, env),
        cwd=data_dir.parent,
        check=False,
    )
