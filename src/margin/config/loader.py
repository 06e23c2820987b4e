"""Load and validate configuration files; errors name the bad key and its line."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from margin.config.model import MarginConfig
from margin.errors import ConfigError

log = logging.getLogger(__name__)

# Spellings still accepted for one release: (section, old key, new key). Each load that uses one
# logs a single warning naming every place, so a config file gets fixed before the old key goes.
DEPRECATED_KEYS: tuple[tuple[str, str, str], ...] = (("deployments", "tier", "cost_rank"),)


def load_config(path: str | Path) -> MarginConfig:
    text = Path(path).read_text(encoding="utf-8")
    return parse_config(text, source=str(path))


def parse_config(text: str, *, source: str = "<config>") -> MarginConfig:
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping")
    _warn_deprecated(data, root, source)
    try:
        return MarginConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, root, source)) from None


def deprecated_uses(data: dict[str, Any]) -> list[tuple[list[Any], str]]:
    """[(location of an old key, its new name)] in a parsed config file."""
    found = []
    for section, old, new in DEPRECATED_KEYS:
        items = data.get(section)
        for index, item in enumerate(items if isinstance(items, list) else []):
            if isinstance(item, dict) and old in item:
                found.append(([section, index, old], new))
    return found


def _warn_deprecated(data: dict[str, Any], root: yaml.Node | None, source: str) -> None:
    uses = deprecated_uses(data)
    if not uses:
        return
    places = []
    for loc, new in uses:
        line = _line_of(root, loc)
        places.append(f"{source}:{line}: {'.'.join(str(p) for p in loc)} (now {new})")
    log.warning("deprecated config keys, accepted until the next release: %s", "; ".join(places))


def _describe(exc: ValidationError, root: yaml.Node | None, source: str) -> str:
    lines = []
    for error in exc.errors():
        loc = [part for part in error["loc"] if not _is_internal(part)]
        where = ".".join(str(p) for p in loc) or "(top level)"
        line = _line_of(root, loc)
        at = f"{source}:{line}" if line else source
        lines.append(f"{at}: {where}: {error['msg']}")
    return "invalid configuration\n  " + "\n  ".join(lines)


def _is_internal(part: Any) -> bool:
    # pydantic adds union-member and validator names to locations; they are not config keys.
    return isinstance(part, str) and (part.startswith("function-") or part in {"EnvSecret", "str"})


def _line_of(node: yaml.Node | None, loc: list[Any]) -> int | None:
    """The 1-based line of the deepest node along `loc` that exists in the YAML tree."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        child = _child(node, part)
        if child is None:
            break
        node = child
        line = node.start_mark.line + 1
    return line


def _child(node: yaml.Node | None, part: Any) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                return value if value.value not in ("", None) else key
        return None
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
        item: yaml.Node = node.value[part]
        return item
    return None
