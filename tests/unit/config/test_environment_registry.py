"""Every environment variable margin reads is declared in margin.config.environment, and
docs/configuration.md lists exactly those: code, registry and docs cannot drift apart."""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from margin.cli import COMMANDS
from margin.config.environment import DATA_DIR, REGISTRY, EnvVar, markdown_table

ROOT = Path(__file__).resolve().parents[3]
SRC = ROOT / "src" / "margin"
REGISTRY_MODULE = SRC / "config" / "environment.py"
DOC = ROOT / "docs" / "configuration.md"
ENV_ACCESS = frozenset({"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"})
ENV_REFERENCE = re.compile(r"\benv:([A-Z][A-Z0-9_]*)")
PLACEHOLDERS = frozenset({"VAR", "NAME"})  # `env:VAR` in help texts and docstrings
NAMES = {var.name for var in REGISTRY}


def _sources() -> Iterator[tuple[Path, ast.AST]]:
    for path in sorted(SRC.rglob("*.py")):
        yield path, ast.parse(path.read_text(encoding="utf-8"))


def _env_accesses(tree: ast.AST) -> list[int]:
    """Lines that touch the process environment: os.environ / os.getenv ..., or import them from os."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ENV_ACCESS:
            if isinstance(node.value, ast.Name) and node.value.id == "os":
                lines.append(node.lineno)
        elif (
            isinstance(node, ast.ImportFrom)
            and node.module == "os"
            and any(alias.name in ENV_ACCESS for alias in node.names)
        ):
            lines.append(node.lineno)
    return lines


def test_only_the_registry_module_touches_the_environment() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line}"
        for path, tree in _sources()
        if path != REGISTRY_MODULE
        for line in _env_accesses(tree)
    ]
    assert offenders == [], "read environment variables through margin.config.environment"
    assert _env_accesses(ast.parse(REGISTRY_MODULE.read_text(encoding="utf-8")))  # the scan does see them


def test_the_scan_catches_every_spelling() -> None:
    code = "import os\nfrom os import getenv\na = os.environ['X']\nb = os.getenv('Y')\nos.putenv('Z', '1')\n"
    assert _env_accesses(ast.parse(code)) == [2, 3, 4, 5]


def _commands() -> Iterator[click.Command]:
    def walk(command: click.Command) -> Iterator[click.Command]:
        yield command
        if isinstance(command, click.Group):
            for sub in command.commands.values():
                yield from walk(sub)

    for target in COMMANDS.values():
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if (error.name or "margin").startswith("margin"):
                raise
            continue  # an optional extra is missing; that command cannot read anything either
        yield from walk(getattr(module, attr))


def test_cli_options_read_only_registered_variables() -> None:
    read = {
        (command.name, param.name, name)
        for command in _commands()
        for param in command.params
        for name in ([param.envvar] if isinstance(param.envvar, str) else list(param.envvar or ()))
    }
    assert read, "the CLI reads at least MARGIN_ADMIN_KEY"
    assert {name for _, _, name in read} <= NAMES, read


def _string_literals(tree: ast.AST) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.value


def test_env_references_written_in_the_code_name_registered_variables() -> None:
    """`env:NAME` defaults and examples in the code (e.g. `api_key: env:OPENAI_API_KEY`) name
    variables the table documents; f-strings built from the registry are fine by construction."""
    named = {m for _, tree in _sources() for text in _string_literals(tree) for m in ENV_REFERENCE.findall(text)}
    assert named - PLACEHOLDERS <= NAMES, named - PLACEHOLDERS - NAMES


def test_the_docs_table_is_the_registry() -> None:
    text = DOC.read_text(encoding="utf-8")
    match = re.search(r"<!-- env-table:start -->\n(.*?)\n<!-- env-table:end -->", text, re.S)
    assert match is not None, f"{DOC.name} lost its env-table markers"
    regenerate = "python -c 'from margin.config.environment import markdown_table; print(markdown_table())'"
    assert match.group(1) == markdown_table(), f"docs/configuration.md is stale: paste the output of {regenerate}"
    documented = set(re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", match.group(1), re.M))
    assert documented == NAMES


def test_registry_entries_are_unique_and_explained() -> None:
    assert len(NAMES) == len(REGISTRY)
    assert all(var.meaning and var.default and "|" not in var.meaning + var.default for var in REGISTRY)


def test_an_empty_variable_counts_as_unset() -> None:
    var = EnvVar("MARGIN_TEST_ONLY", "none", "test")
    assert var.read({}) is None and var.read({"MARGIN_TEST_ONLY": ""}) is None
    assert var.read({"MARGIN_TEST_ONLY": "x"}) == "x"


def test_the_data_dir_comes_from_the_registered_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from margin.config import resolve_data_dir
    from margin.metering.catalog import default_user_catalog_path

    monkeypatch.setenv(DATA_DIR.name, str(tmp_path))
    assert resolve_data_dir() == tmp_path
    assert default_user_catalog_path() == tmp_path / "prices.yaml"  # where `margin prices import` writes
