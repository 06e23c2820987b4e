"""The question data of bench/cache.py, generated from hand-written templates (intents, phrasings,
slot values), so nothing is downloaded: labelled pairs for calibration, and a replay workload where
about a third of queries have a true duplicate, a third are near-misses, a third are new."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Intent:
    """Phrasings of one kind of question. A slot value "word|synonym" is one meaning that
    paraphrases spell either way; {a} and {b} are ordered (swappable) when `directional`."""

    name: str
    phrasings: tuple[str, ...]
    slots: dict[str, tuple[str, ...]]
    directional: bool = False


CURRENCIES = ("US dollars", "euros", "British pounds", "Japanese yen", "Swiss francs", "Canadian dollars")
CITIES = (
    "London",
    "New York",
    "Paris",
    "Tokyo",
    "Berlin",
    "Madrid",
    "Toronto",
    "Sydney",
    "Rome",
    "Chicago",
    "Boston",
    "Lisbon",
    "Dublin",
    "Seoul",
    "Mumbai",
    "Cairo",
)
COUNTRIES = (
    "France",
    "Germany",
    "Australia",
    "Austria",
    "Canada",
    "Brazil",
    "Japan",
    "Kenya",
    "Peru",
    "Norway",
    "Sweden",
    "Chile",
    "Egypt",
    "India",
    "Mexico",
    "Poland",
    "Spain",
    "Italy",
    "Nigeria",
    "Vietnam",
)
LANGS = ("Python", "JavaScript", "Java", "Go", "Rust", "Ruby", "Kotlin")
APPS = ("VS Code", "Slack", "Chrome", "Outlook", "Spotify", "Firefox")
FEATURES = ("dark mode", "notifications", "auto-save", "spell check", "two-factor authentication")
NUMBERS = ("5", "10", "12", "15", "20", "25", "30", "40", "50", "75", "100", "150", "200", "250", "500", "1000")
YEARS = ("1994", "1998", "2002", "2006", "2010", "2014", "2018", "2022")

INTENTS = (
    Intent(
        "currency",
        (
            "Convert {n} {a} to {b}",
            "Convert {n} {a} into {b}",
            "Please convert {n} {a} to {b}",
            "What is {n} {a} in {b}?",
            "{n} {a} to {b}, what's the conversion?",
        ),
        {"n": NUMBERS, "a": CURRENCIES, "b": CURRENCIES},
        directional=True,
    ),
    Intent(
        "toggle",
        (
            "How do I {v} {f} in {app}?",
            "How can I {v} {f} in {app}?",
            "What are the steps to {v} {f} in {app}?",
            "Steps to {v} {f} in {app}",
            "In {app}, how do I {v} {f}?",
        ),
        {"v": ("enable|turn on", "disable|turn off"), "f": FEATURES, "app": APPS},
    ),
    Intent(
        "capital",
        (
            "What is the capital of {c}?",
            "What's the capital city of {c}?",
            "Name the capital of {c}",
            "What is {c}'s capital?",
            "Tell me the capital of {c}",
        ),
        {"c": COUNTRIES},
    ),
    Intent(
        "units",
        (
            "Convert {n} {a} to {b}",
            "Convert {n} {a} into {b}",
            "What is {n} {a} in {b}?",
            "Please convert {n} {a} to {b}",
            "{n} {a} in {b}?",
        ),
        {
            "n": NUMBERS,
            "a": ("kilometers", "miles", "kilograms", "pounds", "liters", "gallons"),
            "b": ("kilometers", "miles", "kilograms", "pounds", "liters", "gallons"),
        },
        directional=True,
    ),
    Intent(
        "lists",
        (
            "How do I {op} a list in {lang}?",
            "How can I {op} a list in {lang}?",
            "What is the best way to {op} a list in {lang}?",
            "{op} a list in {lang}: how?",
            "How do you {op} a list in {lang}?",
        ),
        {"op": ("sort", "reverse", "shuffle", "flatten", "deduplicate"), "lang": LANGS},
    ),
    Intent(
        "prime",
        (
            "Is {n} a prime number?",
            "Is {n} prime?",
            "Is the number {n} prime?",
            "Tell me if {n} is a prime number",
            "Is {n} a prime?",
        ),
        {"n": ("7", "9", "17", "21", "29", "51", "91", "97", "101", "111")},
    ),
    Intent(
        "calories",
        (
            "How many calories are in {n} grams of {food}?",
            "How many calories does {n} grams of {food} have?",
            "Calories in {n} grams of {food}?",
            "How many calories are there in {n} grams of {food}?",
        ),
        {"n": ("50", "100", "150", "200"), "food": ("rice", "pasta", "chicken breast", "oats", "almonds")},
    ),
    Intent(
        "sports",
        (
            "Who won the {event} in {y}?",
            "Who was the winner of the {event} in {y}?",
            "Who won the {y} {event}?",
            "Who took the {event} title in {y}?",
        ),
        {"event": ("FIFA World Cup", "Super Bowl", "NBA Finals", "Tour de France", "Wimbledon final"), "y": YEARS},
    ),
    Intent(
        "faster",
        (
            "Is {a} faster than {b}?",
            "Is {a} quicker than {b}?",
            "Is {a} really faster than {b}?",
            "In general, is {a} faster than {b}?",
        ),
        {"a": LANGS, "b": LANGS},
        directional=True,
    ),
    Intent(
        "drugs",
        (
            "Is it {s} to take {drug} with {sub}?",
            "Is it {s} to take {drug} together with {sub}?",
            "Is taking {drug} with {sub} {s}?",
            "Is it {s} to combine {drug} with {sub}?",
        ),
        {
            "s": ("safe", "unsafe|not safe"),
            "drug": ("ibuprofen", "aspirin", "paracetamol", "antihistamines"),
            "sub": ("alcohol", "coffee", "grapefruit juice", "milk"),
        },
    ),
    Intent(
        "sun",
        (
            "What time does the sun {rs} in {city} in {m}?",
            "At what time does the sun {rs} in {city} in {m}?",
            "When does the sun {rs} in {city} in {m}?",
        ),
        {"rs": ("rise", "set"), "city": CITIES, "m": ("January", "April", "July", "October", "December")},
    ),
    Intent(
        "debt",
        (
            "Should I pay off my {debt} {when} investing?",
            "Is it smart to pay off my {debt} {when} investing?",
            "Should I clear my {debt} {when} investing?",
            "Do I pay off my {debt} {when} investing?",
        ),
        {"debt": ("student loan", "credit card debt", "mortgage", "car loan"), "when": ("before", "after")},
    ),
    Intent(
        "translate",
        (
            "Translate '{p}' from {a} to {b}",
            "Translate '{p}' from {a} into {b}",
            "Please translate '{p}' from {a} to {b}",
            "Can you translate '{p}' from {a} to {b}?",
        ),
        {
            "p": ("good morning", "thank you", "see you tomorrow", "where is the station"),
            "a": ("English", "French", "Spanish", "German", "Italian"),
            "b": ("English", "French", "Spanish", "German", "Italian"),
        },
        directional=True,
    ),
    Intent(
        "install",
        (
            "How do I {v} {tool} on {os}?",
            "What are the steps to {v} {tool} on {os}?",
            "How can I {v} {tool} on {os}?",
            "Steps to {v} {tool} on {os}",
        ),
        {
            "v": ("install", "uninstall"),
            "tool": ("Docker", "Node.js", "PostgreSQL", "Git", "Redis"),
            "os": ("Ubuntu 22.04", "Ubuntu 20.04", "Windows 11", "macOS", "Debian 12"),
        },
    ),
    Intent(
        "bake",
        (
            "At what temperature should I bake {item}?",
            "What oven temperature should I use to bake {item}?",
            "What temperature do I bake {item} at?",
            "At what oven temperature do I bake {item}?",
        ),
        {"item": ("bread", "salmon", "cookies", "chicken thighs", "potatoes", "brownies")},
    ),
    Intent(
        "flight",
        (
            "Cheapest way to fly from {a} to {b}?",
            "What is the cheapest way to fly from {a} to {b}?",
            "How can I fly from {a} to {b} as cheaply as possible?",
            "Cheapest flights from {a} to {b}?",
        ),
        {"a": CITIES, "b": CITIES},
        directional=True,
    ),
    Intent(
        "population",
        (
            "What was the population of {city} in {y}?",
            "What was {city}'s population in {y}?",
            "Population of {city} in {y}?",
            "In {y}, what was the population of {city}?",
        ),
        {"city": CITIES, "y": YEARS},
    ),
    Intent(
        "refund",
        (
            "Can I {neg}get a refund within {n} days of purchase?",
            "Can I {neg}get a refund within {n} days after purchase?",
            "Within {n} days of purchase, can I {neg}get a refund?",
        ),
        {"neg": ("", "not "), "n": ("7", "14", "30", "60", "90")},
    ),
)


@dataclass(frozen=True)
class Question:
    meaning: tuple[str, tuple[tuple[str, str], ...]]
    text: str


def render(intent: Intent, slots: dict[str, str], phrasing: int, rng: random.Random) -> Question:
    text = intent.phrasings[phrasing]
    for name, value in slots.items():
        text = text.replace("{" + name + "}", rng.choice(value.split("|")))
    meaning = (intent.name, tuple(sorted((k, v.split("|")[0]) for k, v in slots.items())))
    return Question(meaning, text[:1].upper() + text[1:])


def random_slots(intent: Intent, rng: random.Random) -> dict[str, str]:
    while True:
        slots = {name: rng.choice(pool) for name, pool in intent.slots.items()}
        if not intent.directional or slots.get("a") != slots.get("b"):
            return slots


def mutate(intent: Intent, slots: dict[str, str], rng: random.Random) -> dict[str, str]:
    """One detail changed: a swapped direction, or another value for one slot (number, entity, polarity)."""
    if intent.directional and rng.random() < 0.4:
        return {**slots, "a": slots["b"], "b": slots["a"]}
    name = rng.choice(sorted(intent.slots))
    others = [v for v in intent.slots[name] if v != slots[name]]
    changed = {**slots, name: rng.choice(others)}
    return changed if not intent.directional or changed["a"] != changed["b"] else mutate(intent, slots, rng)


def labelled_pairs(intents: Sequence[Intent], count: int, rng: random.Random) -> list[tuple[str, str, bool]]:
    pairs = []
    for i in range(count):
        intent = rng.choice(intents)
        slots = random_slots(intent, rng)
        first, second = rng.sample(range(len(intent.phrasings)), 2)
        a = render(intent, slots, first, rng)
        other = slots if i % 2 == 0 else mutate(intent, slots, rng)
        b = render(intent, other, second if rng.random() < 0.5 else first, rng)
        pairs.append((a.text, b.text, a.meaning == b.meaning))
    return pairs


def workload(intents: Sequence[Intent], count: int, rng: random.Random) -> list[Question]:
    """About 1/3 true duplicates (an earlier meaning in a phrasing not used for it yet), 1/3
    near-misses (an earlier meaning with one detail changed, never asked before), 1/3 new questions."""
    asked: dict[tuple[object, ...], tuple[Intent, dict[str, str], set[int]]] = {}
    out: list[Question] = []
    while len(out) < count:
        roll = rng.random()
        if asked and roll < 1 / 3:
            intent, slots, used = rng.choice(list(asked.values()))
            unused = [i for i in range(len(intent.phrasings)) if i not in used]
            if not unused:
                continue
            phrasing = rng.choice(unused)
        else:
            found = _new_meaning(intents, asked, rng, near=bool(asked) and roll < 2 / 3)
            if found is None:
                continue
            intent, slots = found
            phrasing = rng.randrange(len(intent.phrasings))
        question = render(intent, slots, phrasing, rng)
        asked.setdefault(_meaning_key(question), (intent, slots, set()))[2].add(phrasing)
        out.append(question)
    return out


def _meaning_key(question: Question) -> tuple[object, ...]:
    return question.meaning


def _new_meaning(
    intents: Sequence[Intent],
    asked: dict[tuple[object, ...], tuple[Intent, dict[str, str], set[int]]],
    rng: random.Random,
    *,
    near: bool,
) -> tuple[Intent, dict[str, str]] | None:
    for _ in range(50):
        if near:
            intent, base, _ = rng.choice(list(asked.values()))
            slots = mutate(intent, base, rng)
        else:
            intent = rng.choice(intents)
            slots = random_slots(intent, rng)
        if render(intent, slots, 0, rng).meaning not in asked:
            return intent, slots
    return None
