"""Reading an eval set: the JSONL items and the optional YAML manifest beside them.

`SET` may be a `.jsonl` file (its manifest, if any, is the `.yaml`/`.yml` of the same stem), a
manifest (its `items:`, default the `.jsonl` of the same stem), or the name of a set shipped with
margin (`margin eval sets` lists them). Every error names the file, the line and the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml
from pydantic import ValidationError

from margin.evals.errors import EvalSetError, GraderSpecError
from margin.evals.graders.protocol import Grader, GraderEnv
from margin.evals.graders.registry import build_grader, requires_reference
from margin.evals.items import EvalItem, EvalManifest, GraderSpec

PACKAGED = Path(__file__).parent / "sets"


@dataclass(frozen=True, slots=True)
class EvalSet:
    manifest: EvalManifest
    items: tuple[EvalItem, ...]
    path: Path  # the JSONL file
    lines: dict[str, int]  # item id -> its line, for messages that point back at the file

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version

    def grader_spec(self, item: EvalItem) -> GraderSpec:
        return item.grader if item.grader is not None else self.manifest.grader


def packaged_sets() -> list[str]:
    return sorted(p.stem for p in PACKAGED.glob("*.jsonl"))


def load_eval_set(spec: str | Path) -> EvalSet:
    items_path, manifest_path = locate(spec)
    manifest = read_manifest(manifest_path) if manifest_path else EvalManifest(name=items_path.stem)
    if manifest_path and manifest.items:
        items_path = (manifest_path.parent / manifest.items).resolve()
    items, lines = read_items(items_path)
    eval_set = EvalSet(manifest=manifest, items=items, path=items_path, lines=lines)
    check_graders(eval_set, manifest_path)
    return eval_set


def locate(spec: str | Path) -> tuple[Path, Path | None]:
    """(the JSONL file, the manifest or None) that `spec` names."""
    path = Path(spec)
    if not path.exists() and isinstance(spec, str) and spec in packaged_sets():
        path = PACKAGED / f"{spec}.jsonl"
    if not path.is_file():
        known = ", ".join(packaged_sets()) or "none"
        raise EvalSetError(f"no such eval set file (sets shipped with margin: {known})", file=spec)
    if path.suffix in (".yaml", ".yml"):
        return path.with_suffix(".jsonl"), path
    manifest = next((p for p in (path.with_suffix(".yaml"), path.with_suffix(".yml")) if p.is_file()), None)
    return path, manifest


def read_manifest(path: Path) -> EvalManifest:
    text = path.read_text(encoding="utf-8")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise EvalSetError(f"not valid YAML: {exc}", file=path, line=mark.line + 1 if mark else None) from None
    if not isinstance(raw, dict):
        raise EvalSetError("a manifest is a YAML mapping (name:, version:, grader: ...)", file=path, line=1)
    try:
        return EvalManifest.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(first["loc"])
        field = ".".join(str(p) for p in loc)
        raise EvalSetError(first["msg"], file=path, line=yaml_line(text, loc), field=field) from None


def yaml_line(text: str, loc: tuple[Any, ...]) -> int | None:
    """The line of the deepest node of `loc` present in the YAML document (1-based)."""
    node: yaml.Node | None = yaml.compose(text)
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            pair = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if pair is None:
                break
            line, node = pair[0].start_mark.line + 1, pair[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line if line is not None else (node.start_mark.line + 1 if node is not None else None)


def read_items(path: Path) -> tuple[tuple[EvalItem, ...], dict[str, int]]:
    if not path.is_file():
        raise EvalSetError("the manifest's items file does not exist", file=path)
    items: list[EvalItem] = []
    lines: dict[str, int] = {}
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            item = parse_item(raw, path, number)
            if item.id in lines:
                raise EvalSetError(
                    f"duplicate id {item.id!r} (first on line {lines[item.id]})", file=path, line=number, field="id"
                )
            lines[item.id] = number
            items.append(item)
    if not items:
        raise EvalSetError("the eval set has no items", file=path)
    return tuple(items), lines


def parse_item(raw: bytes, path: Path, line: int) -> EvalItem:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise EvalSetError(f"not valid JSON: {exc}", file=path, line=line) from None
    if not isinstance(data, dict):
        raise EvalSetError("each line is one JSON object", file=path, line=line)
    try:
        return EvalItem.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or None
        raise EvalSetError(first["msg"].removeprefix("Value error, "), file=path, line=line, field=field) from None


def check_graders(eval_set: EvalSet, manifest_path: Path | None) -> None:
    """Build every grader the set names once (unknown names and bad options fail here, before any
    call), and check that items graded against a reference carry one."""
    env = GraderEnv(judge=eval_set.manifest.judge)
    built: dict[bytes, Grader] = {}
    for item in eval_set.items:
        spec = eval_set.grader_spec(item)
        key = orjson.dumps(spec, option=orjson.OPT_SORT_KEYS)
        if key not in built:
            built[key] = _build_located(spec, env, eval_set, item, manifest_path)
        if requires_reference(built[key]) and not item.all_references():
            raise EvalSetError(
                f"grader {built[key].name!r} needs a reference, and this item has none",
                file=eval_set.path,
                line=eval_set.lines[item.id],
                field="reference",
            )


def _build_located(
    spec: GraderSpec, env: GraderEnv, eval_set: EvalSet, item: EvalItem, manifest_path: Path | None
) -> Grader:
    try:
        return build_grader(spec, env)
    except GraderSpecError as exc:
        if item.grader is None and manifest_path is not None:  # the manifest's default grader
            text = manifest_path.read_text(encoding="utf-8")
            loc = tuple(exc.field.split("."))
            raise EvalSetError(exc.message, file=manifest_path, line=yaml_line(text, loc), field=exc.field) from None
        raise EvalSetError(exc.message, file=eval_set.path, line=eval_set.lines[item.id], field=exc.field) from None
