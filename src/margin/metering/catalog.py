"""The versioned price catalog: the shipped prices.yaml, a user override file and config overrides.

Precedence, lowest first: the package's prices.yaml < the user file (written by
`margin prices import`, default `<data dir>/prices.yaml`, see `default_user_catalog_path`) < config
overrides. Nothing is read at import time: callers build a catalog once (`load_catalog`) and
hold it, typically on the app object.

Lookup never guesses. A model resolves by its exact name, by an alias the catalog lists (dated
snapshots such as `gpt-4o-2024-08-06` are aliases only where the provider bills them at the same
price), or by a provider prefix the catalog knows (`openai/gpt-4o`, `together_ai/<model>`, or
`<model>` with `provider="together"`). Anything else is unknown and goes to the unknown-price
policy.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import yaml

from margin.errors import ConfigError
from margin.metering.price_model import ModelPrice, model_price_to_mapping, parse_model_price

MatchKind = Literal["exact", "alias", "provider_prefix"]
BUILTIN_RESOURCE = "prices.yaml"


@dataclass(frozen=True, slots=True)
class PriceMatch:
    price: ModelPrice
    matched_by: MatchKind


class PriceCatalog:
    """An immutable set of price entries with an alias index. Build new ones; never mutate."""

    __slots__ = ("_aliases", "_entries", "_provider_aliases", "version")

    def __init__(
        self, version: str, entries: Iterable[ModelPrice], provider_aliases: Mapping[str, str] | None = None
    ) -> None:
        by_name = {entry.name: entry for entry in entries}
        aliases: dict[str, str] = {}
        for entry in by_name.values():  # later entries (higher precedence) win an alias clash
            for alias in entry.aliases:
                aliases[alias] = entry.name
        self.version = version
        self._entries = MappingProxyType(by_name)
        self._aliases = MappingProxyType(aliases)
        self._provider_aliases = MappingProxyType(dict(provider_aliases or {}))

    @property
    def entries(self) -> Mapping[str, ModelPrice]:
        return self._entries

    @property
    def provider_aliases(self) -> Mapping[str, str]:
        return self._provider_aliases

    def __len__(self) -> int:
        return len(self._entries)

    def _named(self, name: str) -> PriceMatch | None:
        if name in self._entries:
            return PriceMatch(self._entries[name], "exact")
        if name in self._aliases:
            return PriceMatch(self._entries[self._aliases[name]], "alias")
        return None

    def resolve(self, model: str, provider: str | None = None) -> PriceMatch | None:
        """The entry for `model` (as sent upstream) and how it was found, or None."""
        found = self._named(model)
        if found is not None:
            return found
        if provider:
            canonical = self._provider_aliases.get(provider, provider)
            found = self._named(f"{canonical}/{model}")
            if found is not None:
                return PriceMatch(found.price, "provider_prefix")
        prefix, _, rest = model.partition("/")
        canonical_prefix = self._provider_aliases.get(prefix)
        if not rest or canonical_prefix is None:
            return None
        found = self._named(f"{canonical_prefix}/{rest}") or self._named(rest)
        if found is not None and found.price.provider == canonical_prefix:
            return PriceMatch(found.price, "provider_prefix")
        return None

    def lookup(self, model: str, provider: str | None = None) -> ModelPrice | None:
        found = self.resolve(model, provider)
        return found.price if found else None

    def with_entries(self, entries: Iterable[ModelPrice], *, version: str) -> PriceCatalog:
        """A new catalog where `entries` replace or add to this one's."""
        merged = dict(self._entries)
        merged.update((entry.name, entry) for entry in entries)
        return PriceCatalog(version, merged.values(), self._provider_aliases)

    def with_overrides(self, overrides: Mapping[str, Mapping[str, Any]]) -> PriceCatalog:
        """Merge config overrides: model -> partial entry (any entry field, e.g. {"input": "2"}).

        An existing model keeps every field the override does not name; a new model needs at
        least `input` and `output`. Raises ConfigError on an invalid override.
        """
        merged = [self._override_entry(name, partial) for name, partial in overrides.items()]
        suffix = _digest({name: dict(partial) for name, partial in overrides.items()})
        return self.with_entries(merged, version=f"{self.version}+config:{suffix}")

    def _override_entry(self, name: str, partial: Mapping[str, Any]) -> ModelPrice:
        current = self.lookup(name)
        base = model_price_to_mapping(current) if current is not None else {}
        # An override of an alias replaces the entry it names, under that entry's name.
        target = current.name if current is not None else name
        merged = {**base, **dict(partial)}
        try:
            return parse_model_price(target, merged, version=f"config:{_digest(merged)}", origin="config")
        except ValueError as exc:
            raise ConfigError(f"invalid price override for {name!r}: {exc}") from None


def _digest(value: Any) -> str:
    canonical = json.dumps(value, sort_keys=True, default=str).encode()
    return hashlib.sha256(canonical).hexdigest()[:12]


def _yaml_load(text: str) -> Any:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(text, Loader=loader)  # a safe loader, chosen above


def parse_catalog_document(document: Any, *, origin: str, where: str) -> PriceCatalog:
    """A catalog from a decoded YAML document `{version, provider_aliases?, models}`."""
    if not isinstance(document, Mapping) or not isinstance(document.get("models"), Mapping):
        raise ConfigError(f"{where}: expected a mapping with 'version' and 'models'")
    version = str(document.get("version") or "")
    if not version:
        raise ConfigError(f"{where}: 'version' is required")
    aliases = document.get("provider_aliases") or {}
    if not isinstance(aliases, Mapping):
        raise ConfigError(f"{where}: 'provider_aliases' must be a mapping")
    entry_version = f"{origin}:{version}"
    try:
        entries = [
            parse_model_price(str(name), raw, version=entry_version, origin=origin)
            for name, raw in document["models"].items()
        ]
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return PriceCatalog(entry_version, entries, {str(k): str(v) for k, v in aliases.items()})


def load_builtin_catalog() -> PriceCatalog:
    """The catalog shipped in the package (read on every call: hold the result)."""
    text = resources.files("margin.metering").joinpath(BUILTIN_RESOURCE).read_text(encoding="utf-8")
    return parse_catalog_document(_yaml_load(text), origin="builtin", where=BUILTIN_RESOURCE)


def load_catalog_file(path: Path, *, origin: str = "user") -> PriceCatalog:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read price catalog {path}: {exc.strerror}") from None
    try:
        document = _yaml_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_catalog_document(document, origin=origin, where=str(path))


def default_user_catalog_path() -> Path:
    """`prices.yaml` in margin's data directory (MARGIN_DATA_DIR, else the user data dir): the file
    `margin serve` and `margin reprice` read when the config names no `metering.catalog_file`."""
    from margin.config.defaults import resolve_data_dir  # only the CLI needs it

    return resolve_data_dir() / "prices.yaml"


def merge_catalogs(base: PriceCatalog, top: PriceCatalog) -> PriceCatalog:
    """`top`'s entries over `base`'s; provider aliases merged the same way."""
    aliases = {**base.provider_aliases, **top.provider_aliases}
    merged = dict(base.entries)
    merged.update(top.entries)
    return PriceCatalog(f"{base.version}+{top.version}", merged.values(), aliases)


def load_catalog(
    *, user_file: Path | None = None, overrides: Mapping[str, Mapping[str, Any]] | None = None
) -> PriceCatalog:
    """The effective catalog: builtin, then `user_file` if it exists, then config `overrides`."""
    catalog = load_builtin_catalog()
    if user_file is not None and user_file.exists():
        catalog = merge_catalogs(catalog, load_catalog_file(user_file))
    if overrides:
        catalog = catalog.with_overrides(overrides)
    return catalog


def write_catalog_file(path: Path, version: str, entries: Iterable[ModelPrice]) -> None:
    """Write a user catalog atomically (a crash leaves the old file or the new one, never half)."""
    document = {
        "version": version,
        "models": {entry.name: model_price_to_mapping(entry) for entry in entries},
    }
    text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=120)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=".prices-", suffix=".yaml")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temp_name, path)
    finally:
        Path(temp_name).unlink(missing_ok=True)  # already gone after a successful replace
