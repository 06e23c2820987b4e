"""The semantic guard: two questions may share an answer only if the details a sentence embedding
blurs agree: numbers and dates, negations, contrasting words (enable/disable, km/miles), named
entities, what is asked (why/when/who...), and the order of ordered pairs ("A to B", "A than B").

MiniLM scores "how to enable X" vs "how to disable X", "5 km to miles" vs "5 miles to km" and
"safe" vs "not safe" at 0.96-0.99, so no similarity threshold separates them; these rules do. Each
rule errs towards a miss. Features are extracted once per text (cached entries keep theirs).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from margin.caching.semantic.lexicon import (
    COMMON,
    CONTRAST_SETS,
    DIRECTIONAL,
    KNOWN_NAMES,
    NEGATIONS,
    NEGATIVE_PREFIXES,
    NUMBER_WORDS,
    POLAR_OPENERS,
    PRONOUN_ONE_AFTER,
    PRONOUN_ONE_BEFORE,
    QUESTION_FOCUS,
    QUESTION_FOCUS_PHRASES,
)

_TOKEN = re.compile(r"[A-Za-z0-9_°$€£¥][A-Za-z0-9_'\u2019.+#/@°-]*")
_QUOTED = re.compile(r"[\"“`]([^\"”`]{2,80})[\"”`]|(?<![\w'])'([^']{2,80})'(?![\w'])")
_ARROWS = re.compile(r"->|=>|→")
_BREAK = re.compile(r"[.!?:;\n]")
_DIGITS = re.compile(r"\d+(?:[.,]\d+)*")
_CARDINALS = {
    w for w, v in NUMBER_WORDS.items() if isinstance(v, int) and (v < 100 or v in (100, 1000, 10**6, 10**9, 10**12))
}
_PAIR_REACH = 3  # how far from a connector its two sides are looked for, in tokens


def stem(word: str) -> str:
    """A light suffix stripper: enough to meet "enabled"/"enabling"/"enable", no more."""
    w = word.lower()
    if len(w) > 5 and w.endswith("ly"):
        w = w[:-2]
    if len(w) > 4 and w.endswith("ies"):
        w = w[:-3] + "y"
    elif len(w) > 5 and w.endswith("ing"):
        w = w[:-3]
    elif (len(w) > 4 and w.endswith("ed")) or (len(w) > 4 and w.endswith(("ches", "shes", "sses", "xes", "zes"))):
        w = w[:-2]
    elif len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        w = w[:-1]
    if len(w) > 3 and w[-1] == w[-2] and w[-1] not in "aeiouls":
        w = w[:-1]  # stopp(ed) -> stop
    if len(w) > 4 and w.endswith("e"):
        w = w[:-1]
    return w


def _contrast_table() -> tuple[dict[str, list[tuple[int, int]]], list[tuple[tuple[str, ...], int, int]]]:
    words: dict[str, list[tuple[int, int]]] = {}
    phrases: list[tuple[tuple[str, ...], int, int]] = []
    for set_id, members in enumerate(CONTRAST_SETS):
        for member_id, synonyms in enumerate(members):
            for synonym in synonyms:
                parts = tuple(stem(p) for p in synonym.split())
                if len(parts) == 1:
                    words.setdefault(parts[0], []).append((set_id, member_id))
                else:
                    phrases.append((parts, set_id, member_id))
    return words, phrases


_CONTRAST_WORDS, _CONTRAST_PHRASES = _contrast_table()


@dataclass(frozen=True, slots=True)
class Features:
    tokens: tuple[str, ...]  # lower case, in order
    positions: dict[str, int]  # first position of each token
    text: str  # lower case, arrows spelled "to"
    numbers: tuple[str, ...]  # sorted, normalised
    negations: int
    contrast: frozenset[tuple[int, int]]
    contrast_order: dict[int, tuple[int, ...]]  # per contrast set with 2+ members mentioned
    focus: frozenset[str]
    entities: tuple[str, ...]  # in order of first appearance, lower case
    quoted: tuple[str, ...]
    number_order: tuple[str, ...]  # numbers in order of appearance
    pairs: tuple[tuple[str, str], ...]  # ordered (left, right) around directional connectors
    comparatives: frozenset[object]  # what comes right before "than", as a contrast member or a stem
    polar: bool = False  # a yes/no question (opens with an auxiliary verb)
    # (stemmed word, connector, stemmed word) for the two words right beside each directional connector,
    # common words included: "a way to save" is not "a save to way" though "way" is a common word
    links: frozenset[tuple[str, str, str]] = frozenset()


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    reason: str = ""


def features(text: str) -> Features:
    spelled = _ARROWS.sub(" to ", text)
    raw = [_clean(m.group()) for m in _TOKEN.finditer(spelled)]
    starts = _sentence_starts(spelled)
    tokens = tuple(t.lower() for t in raw if t)
    positions: dict[str, int] = {}
    for i, token in enumerate(tokens):
        positions.setdefault(token, i)
    numbered = list(_numbers(tokens))
    entities = _entities([t for t in raw if t], starts)
    lowered = " ".join(tokens)
    contrast, contrast_order = _contrast(tokens)
    return Features(
        tokens=tokens,
        positions=positions,
        text=" " + " ".join(spelled.lower().split()) + " ",
        numbers=tuple(sorted(n for _, n in numbered)),
        negations=sum(1 for t in tokens if t.replace("'", "").replace("\u2019", "") in NEGATIONS),
        contrast=contrast,
        contrast_order=contrast_order,
        focus=frozenset(t for t in tokens if t in QUESTION_FOCUS)
        | frozenset(p for p in QUESTION_FOCUS_PHRASES if f" {p} " in f" {lowered} "),
        entities=tuple(entities),
        quoted=tuple((double or single).lower().strip() for double, single in _QUOTED.findall(text)),
        number_order=tuple(n for _, n in numbered),
        pairs=tuple(_pairs(tokens)),
        comparatives=_comparatives(tokens),
        polar=bool(tokens) and tokens[0] in POLAR_OPENERS,
        links=_links(tokens),
    )


def _clean(token: str) -> str:
    token = token.rstrip(".-/'\u2019@")
    for suffix in ("'s", "\u2019s"):
        if token.lower().endswith(suffix):
            token = token[: -len(suffix)]
    return token


def _sentence_starts(text: str) -> set[int]:
    """Indexes (among non-empty tokens) of tokens that open a sentence: capitals there prove nothing."""
    starts: set[int] = set()
    index, previous = 0, None
    for match in _TOKEN.finditer(text):
        if not _clean(match.group()):
            continue
        if previous is None or _BREAK.search(text[previous.end() - 1 : match.start()]):
            starts.add(index)
        previous = match
        index += 1
    return starts


def _numbers(tokens: Sequence[str]) -> Iterator[tuple[int, str]]:
    """(position, normalised value) of every number: digits, number words, ordinals, dates."""
    run_start, total, current, in_run = 0, Decimal(0), Decimal(0), False
    for i, token in enumerate(tokens):
        parts = token.split("-")
        if token == "one" and _pronoun_one(tokens, i):
            continue
        if token in _CARDINALS or (len(parts) > 1 and all(p in _CARDINALS for p in parts)):
            if not in_run:
                run_start, total, current, in_run = i, Decimal(0), Decimal(0), True
            for part in parts:
                total, current = _accumulate(total, current, Decimal(NUMBER_WORDS[part]))
            continue
        if in_run:
            yield run_start, _normal(total + current)
            in_run = False
        if token in NUMBER_WORDS:
            yield i, _normal(Decimal(str(NUMBER_WORDS[token])))
        elif any(c.isdigit() for c in token):  # "60000", and "rs.60000", "$5", "5km" too
            for digits in _DIGITS.findall(token):
                yield i, _normal_digits(digits)
    if in_run:
        yield run_start, _normal(total + current)


def _pronoun_one(tokens: Sequence[str], i: int) -> bool:
    before = tokens[i - 1] if i > 0 else ""
    after = tokens[i + 1] if i + 1 < len(tokens) else ""
    return before in PRONOUN_ONE_AFTER or after in PRONOUN_ONE_BEFORE


def _accumulate(total: Decimal, current: Decimal, value: Decimal) -> tuple[Decimal, Decimal]:
    if value == 100:
        return total, max(current, Decimal(1)) * 100
    if value >= 1000:
        return total + max(current, Decimal(1)) * value, Decimal(0)
    return total, current + value


def _normal_digits(digits: str) -> str:
    plain = digits.replace(",", "") if re.fullmatch(r"\d{1,3}(,\d{3})+(\.\d+)?", digits) else digits
    try:
        return _normal(Decimal(plain))
    except InvalidOperation:
        return plain


def _normal(value: Decimal) -> str:
    return format(value.normalize(), "f")


def _contrast(tokens: Sequence[str]) -> tuple[frozenset[tuple[int, int]], dict[int, tuple[int, ...]]]:
    """Contrast members mentioned, and for sets with several members mentioned, their order
    ("40 km in miles" is not "40 miles in km")."""
    stems = [stem(t) for t in tokens]
    spotted: list[tuple[int, int, int]] = []  # (position, set, member)
    for i, s in enumerate(stems):
        spotted.extend((i, set_id, member) for set_id, member in _CONTRAST_WORDS.get(s, ()))
    for parts, set_id, member_id in _CONTRAST_PHRASES:
        for i in range(len(stems) - len(parts) + 1):
            if tuple(stems[i : i + len(parts)]) == parts:
                spotted.append((i, set_id, member_id))
    order: dict[int, list[int]] = {}
    for _, set_id, member_id in sorted(spotted):
        members = order.setdefault(set_id, [])
        if member_id not in members:
            members.append(member_id)
    ordered = {set_id: tuple(members) for set_id, members in order.items() if len(members) > 1}
    return frozenset((set_id, member_id) for _, set_id, member_id in spotted), ordered


def _comparatives(tokens: Sequence[str]) -> frozenset[object]:
    """The quality compared by "than" ("heavier than" vs "lighter than"): synonyms (faster/quicker)
    meet through their contrast member; anything else must be the same word."""
    found: set[object] = set()
    for i, token in enumerate(tokens):
        if token == "than" and i > 0:
            word = stem(tokens[i - 1])
            members = _CONTRAST_WORDS.get(word)
            found.add(tuple(sorted(members)) if members else word)
    return frozenset(found)


def _entities(raw: Sequence[str], starts: set[int]) -> list[str]:
    found: list[str] = []
    for i, token in enumerate(raw):
        lower = token.lower()
        if lower in COMMON or lower in found or lower in NEGATIONS:
            continue
        if _is_entity(token, sentence_start=i in starts):
            found.append(lower)
    return found


def _is_entity(token: str, *, sentence_start: bool) -> bool:
    lower = token.lower()
    if lower in KNOWN_NAMES:
        return True
    if any(c.isdigit() for c in token) and any(c.isalpha() for c in token):
        return True  # python3, gpt-4o, ES2015
    if any(c in token[1:] for c in ".+#_/@") or (len(token) > 1 and token[-1] in "+#"):
        return True  # node.js, C++, C#, file.txt, user@example.com
    if any(c.isupper() for c in token[1:]):
        return True  # iPhone, macOS, AWS
    return token[:1].isupper() and not sentence_start


def _pairs(tokens: Sequence[str]) -> Iterator[tuple[str, str]]:
    def salient(token: str) -> bool:
        return token not in COMMON and token not in DIRECTIONAL and token not in NEGATIONS

    for i, token in enumerate(tokens):
        if token not in DIRECTIONAL:
            continue
        left = next((tokens[j] for j in range(i - 1, max(-1, i - 1 - _PAIR_REACH), -1) if salient(tokens[j])), None)
        right = next(
            (tokens[j] for j in range(i + 1, min(len(tokens), i + 1 + _PAIR_REACH)) if salient(tokens[j])), None
        )
        if left is not None and right is not None and left != right:
            yield left, right


def _links(tokens: Sequence[str]) -> frozenset[tuple[str, str, str]]:
    found = set()
    for i in range(1, len(tokens) - 1):
        left, connector, right = tokens[i - 1], tokens[i], tokens[i + 1]
        if connector in DIRECTIONAL and left not in DIRECTIONAL and right not in DIRECTIONAL:
            left, right = stem(left), stem(right)
            if left != right:
                found.add((left, connector, right))
    return frozenset(found)


def agree(a: Features, b: Features) -> Verdict:
    """Whether an answer to `a` may be served for `b` (symmetric)."""
    if a.numbers != b.numbers:
        return Verdict(False, "numbers")
    if a.negations != b.negations or _prefix_negated(a, b) or _prefix_negated(b, a):
        return Verdict(False, "negation")
    if a.contrast != b.contrast or a.comparatives != b.comparatives:
        return Verdict(False, "contrast")
    if a.contrast_order != b.contrast_order:
        return Verdict(False, "order")
    if a.focus != b.focus or a.polar != b.polar:
        return Verdict(False, "question")
    if not _covered(a, b) or not _covered(b, a):
        return Verdict(False, "entities")
    if not _same_order(a, b):
        return Verdict(False, "order")
    if _direction_differs(a, b):
        return Verdict(False, "direction")
    return Verdict(True)


def disagreements(a: Features, b: Features) -> frozenset[str]:
    """Every check that fails (agree stops at the first): features for a learned decision."""
    checks = {
        "numbers": a.numbers != b.numbers,
        "negation": a.negations != b.negations or _prefix_negated(a, b) or _prefix_negated(b, a),
        "contrast": a.contrast != b.contrast or a.comparatives != b.comparatives,
        "order": a.contrast_order != b.contrast_order or not _same_order(a, b),
        "question": a.focus != b.focus or a.polar != b.polar,
        "entities": not _covered(a, b) or not _covered(b, a),
        "direction": _direction_differs(a, b),
    }
    return frozenset(name for name, failed in checks.items() if failed)


def _prefix_negated(a: Features, b: Features) -> bool:
    """Negation by affix: "unsafe" vs "safe", "invisible" vs "visible", "careless" vs "careful"."""
    for token in set(a.tokens) - set(b.positions):
        for prefix in NEGATIVE_PREFIXES:
            if token.startswith(prefix) and token[len(prefix) :] in b.positions and len(token) > len(prefix) + 2:
                return True
        if token.endswith("less") and (token[:-4] in b.positions or token[:-4] + "ful" in b.positions):
            return True
    return False


def _covered(a: Features, b: Features) -> bool:
    """Every entity of `a` occurs in `b`, up to inflection ("college" is "Colleges")."""
    missing = [e for e in a.entities if e not in b.positions]
    if missing:
        stems = {stem(t) for t in b.tokens}
        if any(stem(e) not in stems for e in missing):
            return False
    return all(q in b.text for q in a.quoted)


def _same_order(a: Features, b: Features) -> bool:
    """Shared entities appear in the same order ("Did Germany beat Brazil" is not "Did Brazil beat
    Germany"), and so do numbers ("from 2019 to 2021")."""
    shared = set(a.entities) & set(b.entities)
    same_entities = [x for x in a.entities if x in shared] == [x for x in b.entities if x in shared]
    return same_entities and a.number_order == b.number_order


def _direction_differs(a: Features, b: Features) -> bool:
    """One says "x ... y" where the other says "y ... x", either way round."""
    return not _pairs_hold(a, b) or not _pairs_hold(b, a) or _links_reversed(a, b) or _links_reversed(b, a)


def _links_reversed(a: Features, b: Features) -> bool:
    """`b` has "y to x" right where `a` has "x to y" (and not "x to y" too): the two words beside a
    connector swapped, which `_pairs_hold` misses when one of them is a common word."""
    return any((y, c, x) in b.links and (x, c, y) not in b.links for x, c, y in a.links)


def _pairs_hold(a: Features, b: Features) -> bool:
    for left, right in a.pairs:
        if left in b.positions and right in b.positions and b.positions[left] > b.positions[right]:
            return False
    return True
