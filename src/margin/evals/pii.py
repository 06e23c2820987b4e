"""Names and postal addresses in production samples (docs/evals.md, "Production samples"): the
optional `pii` extra, built on Presidio. Its AnalyzerEngine runs on an explicitly configured spaCy
model (loaded by package name with `spacy.load`; never downloaded), beside one pattern recogniser of
margin's own for street lines ("221B Baker Street"), which the small spaCy model does not tag; its
AnonymizerEngine replaces what was found by typed placeholders in margin.evals.redact's style
(`[NAME]`, `[ADDRESS]`, `[LOCATION]` ...), overlaps merged.

Nothing is imported or loaded until `load` or the first text (loading takes seconds): call it from
a worker beside the request path, never from the event loop (margin.rollout.sampling uses a worker
process). margin.config.pii tells at config time whether the extra is installed."""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

PLACEHOLDERS = {"PERSON": "NAME", "STREET_ADDRESS": "ADDRESS"}  # others: the entity's own name
STREET_ADDRESS = "STREET_ADDRESS"
_SUFFIXES = (
    "Street|St|Road|Rd|Avenue|Ave|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Place|Pl|Square|Sq|Terrace|Way|"
    "Close|Crescent|Parkway|Pkwy|Highway|Hwy|Row|Mews|Gardens|Strasse|Straße|Rue"
)
# A house number (221, 221B, 12-14), one to four capitalised words, a street suffix, an optional
# compass point: matched case-sensitively, so prose ("3 big roads") stays.
STREET_PATTERN = (
    rf"\b\d{{1,5}}[A-Za-z]?(?:-\d{{1,5}})?,?\s+(?:[A-Z][\w'.-]*\s+){{1,4}}(?:{_SUFFIXES})\b\.?"
    r"(?:\s+(?:N|S|E|W|NE|NW|SE|SW)\b)?"
)


def placeholder(entity: str) -> str:
    return PLACEHOLDERS.get(entity, entity)


@dataclass(frozen=True, slots=True)
class _Engines:
    analyzer: Any  # presidio_analyzer.AnalyzerEngine (the extra is optional: no static type here)
    anonymizer: Any  # presidio_anonymizer.AnonymizerEngine
    operator: Any  # presidio_anonymizer.entities.OperatorConfig


class PresidioRedactor:
    """One analyzer per process and spaCy model, built on first use; thread-safe."""

    def __init__(self, spacy_model: str) -> None:
        self.spacy_model = spacy_model
        self._engines: _Engines | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._engines is not None

    def load(self) -> _Engines:
        with self._lock:
            if self._engines is None:
                self._engines = _build(self.spacy_model)
            return self._engines

    def redact(self, text: str, entities: Sequence[str], score_threshold: float, found: dict[str, int]) -> str:
        """`text` with every finding replaced by its placeholder; `found` counts them by placeholder."""
        if not text.strip():
            return text
        engines = self.load()
        results = engines.analyzer.analyze(
            text=text, language="en", entities=list(entities), score_threshold=score_threshold
        )
        if not results:
            return text
        operators = {e: engines.operator("replace", {"new_value": f"[{placeholder(e)}]"}) for e in entities}
        out = engines.anonymizer.anonymize(text=text, analyzer_results=results, operators=operators)
        for item in out.items:
            label = placeholder(str(item.entity_type))
            found[label] = found.get(label, 0) + 1
        return str(out.text)


def _build(spacy_model: str) -> _Engines:
    import spacy
    from presidio_analyzer import AnalyzerEngine, Pattern, PatternRecognizer
    from presidio_analyzer.nlp_engine import SpacyNlpEngine
    from presidio_anonymizer import AnonymizerEngine
    from presidio_anonymizer.entities import OperatorConfig

    nlp_engine = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": spacy_model}])
    # Set the loaded model ourselves: SpacyNlpEngine.load() downloads a model it does not find. The
    # parser is not needed (Presidio reads entities, tokens and lemmas): about 10% less time a text.
    nlp_engine.nlp = {"en": spacy.load(spacy_model, exclude=["parser"])}  # type: ignore[assignment]  # typed None until loaded
    analyzer = AnalyzerEngine(nlp_engine=nlp_engine, supported_languages=["en"])
    streets = PatternRecognizer(
        supported_entity=STREET_ADDRESS, name="MarginStreetRecognizer",
        patterns=[Pattern("street line", STREET_PATTERN, 0.6)],
        context=["live", "address", "street", "ship", "deliver", "send"], global_regex_flags=re.MULTILINE,
    )  # fmt: skip
    analyzer.registry.add_recognizer(streets)
    return _Engines(analyzer, AnonymizerEngine(), OperatorConfig)  # type: ignore[no-untyped-call]
