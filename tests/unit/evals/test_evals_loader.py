"""Reading eval sets: every error names the file, the line and the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from margin.evals.errors import EvalSetError
from margin.evals.loader import load_eval_set, packaged_sets

GOOD = {"id": "a", "prompt": "2+2?", "reference": 4, "grader": "numeric"}


def write_set(tmp_path: Path, *lines: object, manifest: str | None = None, name: str = "set") -> Path:
    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    if manifest is not None:
        (tmp_path / f"{name}.yaml").write_text(manifest)
    return path


def error_of(path: Path | str) -> EvalSetError:
    with pytest.raises(EvalSetError) as caught:
        load_eval_set(path)
    return caught.value


def test_a_set_without_manifest_is_named_after_its_file(tmp_path: Path) -> None:
    loaded = load_eval_set(write_set(tmp_path, GOOD, {"id": "b", "messages": [{"role": "user", "content": "hi"}],
                                                      "reference": "hi", "tags": ["x"], "weight": 2}))  # fmt: skip
    assert (loaded.name, loaded.version, len(loaded.items)) == ("set", "1", 2)
    assert loaded.items[1].chat_messages() == [{"role": "user", "content": "hi"}]
    assert loaded.grader_spec(loaded.items[1]) == "exact"  # the default grader
    assert loaded.lines == {"a": 1, "b": 2}


@pytest.mark.parametrize(
    ("lines", "line", "field", "words"),
    [
        ([GOOD, "{not json"], 2, None, "not valid JSON"),
        ([GOOD, "[1, 2]"], 2, None, "one JSON object"),
        ([GOOD, {"id": "b", "reference": 1}], 2, None, "exactly one of `messages` or `prompt`"),
        ([{"id": "b", "prompt": "x", "colour": "red"}], 1, "colour", "Extra inputs are not permitted"),
        ([GOOD, {"id": "c", "prompt": "x", "reference": 1, "weight": -1}], 2, "weight", "greater than 0"),
        ([GOOD, {"id": "c", "messages": [{"role": "robot", "content": "x"}]}], 2, "messages.0.role", "Input should be"),
        ([GOOD, {**GOOD, "prompt": "again"}], 2, "id", "duplicate id 'a' (first on line 1)"),
        ([GOOD, {"id": "d", "prompt": "x", "reference": 1, "grader": "psychic"}], 2, "grader.type", "unknown grader"),
        ([{"id": "e", "prompt": "x", "reference": 1, "grader": {"type": "numeric", "tol": 1}}], 1, "grader.tol", ""),
        ([GOOD, {"id": "f", "prompt": "x"}], 2, "reference", "needs a reference"),
        (
            [{"id": "g", "prompt": "x", "reference": 1, "params": {"stream": True}}],
            1,
            None,
            "params may not set stream",
        ),
    ],
)
def test_item_errors_name_file_line_and_field(
    tmp_path: Path, lines: list[object], line: int, field: str | None, words: str
) -> None:
    path = write_set(tmp_path, *lines)
    error = error_of(path)
    assert (error.file, error.line, error.field) == (str(path), line, field)
    assert error.message.startswith(f"{path}:{line}: ")
    assert words in error.message


def test_blank_lines_are_skipped_but_counted(tmp_path: Path) -> None:
    path = write_set(tmp_path, GOOD, "", "   ", {"id": "b"})
    assert error_of(path).line == 4


def test_manifest_errors_point_at_the_yaml_line(tmp_path: Path) -> None:
    path = write_set(tmp_path, GOOD, manifest="name: demo\nversion: 2\njudge:\n  model: big\n  mode: ranked\n")
    error = error_of(path)
    assert (error.file, error.line, error.field) == (str(tmp_path / "set.yaml"), 5, "judge.mode")
    bad_default = write_set(tmp_path, {"id": "a", "prompt": "x", "reference": 1}, name="other",
                            manifest="name: demo\n\ngrader:\n  type: regex\n  pattern: '('\n")  # fmt: skip
    error = error_of(bad_default)
    assert (error.file, error.line, error.field) == (str(tmp_path / "other.yaml"), 5, "grader.pattern")


def test_manifest_yaml_syntax_error_has_a_line(tmp_path: Path) -> None:
    path = write_set(tmp_path, GOOD, manifest="name: demo\nparams: {temperature: 0\n")
    error = error_of(path)
    assert error.file == str(tmp_path / "set.yaml") and error.line is not None


def test_manifest_supplies_name_version_defaults_and_items_path(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    write_set(tmp_path / "data", {"id": "a", "prompt": "What is 2+2?", "reference": "four"}, name="items")
    manifest = tmp_path / "suite.yaml"
    manifest.write_text("name: suite\nversion: 3\nitems: data/items.jsonl\ngrader: contains\nparams: {max_tokens: 8}\n")
    loaded = load_eval_set(manifest)
    assert (loaded.name, loaded.version, loaded.path) == ("suite", "3", (tmp_path / "data" / "items.jsonl").resolve())
    assert loaded.grader_spec(loaded.items[0]) == "contains"
    assert loaded.manifest.params == {"max_tokens": 8}


def test_judge_grader_needs_a_judge_section(tmp_path: Path) -> None:
    path = write_set(tmp_path, {"id": "a", "prompt": "x", "grader": "judge"})
    assert "judge needs a model" in error_of(path).message
    ok = write_set(
        tmp_path, {"id": "a", "prompt": "x", "grader": "judge"}, name="j", manifest="name: j\njudge: {model: big}\n"
    )
    assert load_eval_set(ok).manifest.judge is not None


def test_missing_set_lists_the_packaged_ones(tmp_path: Path) -> None:
    error = error_of(str(tmp_path / "nope.jsonl"))
    assert "margin-basics" in error.message


def test_the_packaged_set_loads_by_name() -> None:
    assert "margin-basics" in packaged_sets()
    loaded = load_eval_set("margin-basics")
    assert 30 <= len(loaded.items) <= 60
    tags = {t for item in loaded.items for t in item.tags}
    assert {"arithmetic", "classification", "json"} <= tags
