"""Import boundaries from ARCHITECTURE.md, enforced on the source tree (static: parses imports)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "margin"


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def modules() -> list[tuple[str, set[str]]]:
    return [(str(p.relative_to(SRC)), imports_of(p)) for p in sorted(SRC.rglob("*.py"))]


def owners(prefixes: tuple[str, ...]) -> list[str]:
    return [name for name, _ in modules() if name.startswith(prefixes)]


def offenders(library: str, allowed: tuple[str, ...]) -> list[str]:
    return [
        name
        for name, found in modules()
        if not name.startswith(allowed) and any(i == library or i.startswith(library + ".") for i in found)
    ]


@pytest.mark.parametrize(
    ("library", "allowed"),
    [
        ("starlette", ("api/", "dashboard/", "app.py", "factory.py")),
        ("uvicorn", ("cli/serve.py", "server/")),
        ("aiohttp", ("providers/",)),
        ("httpx", ()),
        ("psycopg", ("storage/postgres/",)),
        ("redis", ("storage/redis/",)),
        ("llama_cpp", ("providers/local.py",)),
    ],
)
def test_only_its_layer_imports(library: str, allowed: tuple[str, ...]) -> None:
    assert offenders(library, allowed) == []


def test_redis_is_reached_outside_storage_only_through_its_client_factory() -> None:
    """The Redis response cache lives with the other cache backends (caching/backends/redis.py), not
    in storage/redis/; it gets its client from storage/redis/client.py, so timeouts and the no-retry
    rule stay in one place, and it never imports the driver itself (the rule above)."""
    reach = {
        name: sorted(i for i in found if i.startswith("margin.storage.redis"))
        for name, found in modules()
        if not name.startswith("storage/")
    }
    assert {name: found for name, found in reach.items() if found} == {
        "caching/backends/redis.py": ["margin.storage.redis.client"]
    }


def test_planner_never_imports_the_request_path() -> None:
    bad = [
        name
        for name, found in modules()
        if name.startswith("planner/")
        and any(
            i.startswith(("margin.api", "margin.pipeline", "margin.app", "margin.storage.")) for i in found
        )
    ]
    assert bad == []


def test_pipeline_never_imports_the_web_layer() -> None:
    bad = [
        name
        for name, found in modules()
        if name.startswith("pipeline/") and any(i.startswith(("margin.api", "margin.app")) for i in found)
    ]
    assert bad == []


def test_no_module_does_io_at_import_time() -> None:
    """Every module imports cleanly in a fresh interpreter without touching the network or disk state."""
    import subprocess
    import sys

    names = [
        "margin." + n[:-3].replace("/", ".").removesuffix(".__init__")
        for n, _ in modules()
        if not n.startswith(("cli/", "__main__"))
    ]
    code = "import importlib, sys\nfor n in sys.argv[1:]: importlib.import_module(n)"
    result = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_modules_stay_small() -> None:
    big = {name: n for name, _ in modules() if (n := len((SRC / name).read_text().splitlines())) > 500}
    assert big == {}
