"""The worked example (docs/tuning.md, "Worked example"): routing support tickets into one of six
queues. Tickets are built from templates with varied products, amounts, dates, order numbers,
greetings, sign-offs and typos, so no two are alike; each has one right queue, the exact answer that
stands in for the premium teacher. Seeded: the same seed gives the same dataset.

The train / validation / test split is by template family (every 5th variant of a queue's templates
is held out for test), so the test split asks for wordings the student never saw."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from margin.tuning.dataset import DatasetManifest, example_id, write_dataset

QUEUES = ("billing", "shipping", "account_access", "refund", "technical_issue", "cancellation")
SYSTEM = "Reply with the ticket's queue: " + ", ".join(QUEUES) + "."

_TEMPLATES: dict[str, tuple[str, ...]] = {
    "billing": (
        "I was charged {amount} twice for my {plan} plan this month.",
        "My invoice {invoice} shows {amount} but my plan is supposed to cost less.",
        "Why does my card statement show a charge of {amount} from you on {date}?",
        "Can you send me a corrected invoice? The VAT number on {invoice} is wrong.",
        "The {plan} plan price went up to {amount} without any notice, please explain the charge.",
        "I need a copy of the invoice for my payment of {amount} on {date} for my accountant.",
    ),
    "shipping": (
        "My order {order} still hasn't arrived, the tracking has said in transit since {date}.",
        "The courier left my {product} at the wrong address, order {order}.",
        "Can I change the delivery address for order {order}? I am moving before {date}.",
        "Tracking for {order} shows delivered but there is no package at my door.",
        "How long does shipping to {city} usually take? Order {order} was placed on {date}.",
        "The box for my {product} arrived crushed and the delivery was two weeks late.",
    ),
    "account_access": (
        "I can't log in, the password reset email for {email} never arrives.",
        "My account got locked after too many attempts and I need access before {date}.",
        "The two-factor code is not accepted anymore since I changed my phone.",
        "Someone changed the email on my account to {email}, I can't sign in anymore.",
        "Login keeps saying my username does not exist but I've used it for years.",
        "I lost the phone with my authenticator app, how do I get back into my account?",
    ),
    "refund": (
        "I returned the {product} on {date} and I'm still waiting for my money back.",
        "Please refund order {order}, the {product} was not what was described.",
        "You promised a refund of {amount} two weeks ago and nothing has come back to my card.",
        "I want my money back for the {product}, it broke after two days.",
        "The return for order {order} was received by your warehouse, when is the refund issued?",
        "Can I get a refund for the unused part of my {plan} plan?",
    ),
    "technical_issue": (
        "The app crashes every time I open the settings page on my {device}.",
        "My {product} won't connect to wifi after the latest update.",
        "I get error {error} when I try to export my data.",
        "Sync between my {device} and the web version stopped working on {date}.",
        "The {product} firmware update fails halfway with error {error}.",
        "Pages load forever and then show error {error} since this morning.",
    ),
    "cancellation": (
        "Please cancel my {plan} subscription at the end of this billing period.",
        "I want to close my account and stop the {plan} plan from renewing on {date}.",
        "How do I cancel order {order} before it ships?",
        "Stop my membership please, I don't use the service anymore.",
        "I'd like to end my {plan} contract, what is the notice period?",
        "Cancel the auto-renewal on my account, I do not want to be charged again.",
    ),
}
_FILL: dict[str, Callable[[random.Random], str]] = {
    "amount": lambda r: f"{r.choice(['$', 'EUR ', '£'])}{r.randint(5, 480)}.{r.randint(0, 99):02d}",
    "plan": lambda r: r.choice(["Basic", "Pro", "Team", "Family", "Premium", "Starter"]),
    "invoice": lambda r: f"INV-{r.randint(10000, 99999)}",
    "date": lambda r: f"{r.choice(['March', 'May', 'June', 'October', 'November'])} {r.randint(1, 28)}",
    "order": lambda r: f"#{r.randint(100000, 999999)}",
    "product": lambda r: r.choice(
        ["headphones", "smart speaker", "coffee grinder", "desk lamp", "router", "running shoes", "blender"]
    ),
    "city": lambda r: r.choice(["Lisbon", "Denver", "Osaka", "Leeds", "Toronto", "Lyon"]),
    "email": lambda r: f"{r.choice(['sam', 'ana', 'li', 'omar', 'jo'])}{r.randint(1, 99)}@example.com",
    "device": lambda r: r.choice(["iPhone", "Android phone", "iPad", "Windows laptop", "Mac"]),
    "error": lambda r: f"{r.choice(['E', 'ERR-', '0x'])}{r.randint(100, 999)}",
}
_GREETINGS = ("", "Hi, ", "Hello, ", "Hey there. ", "Good morning, ", "Dear support, ")
_SIGNOFFS = ("", " Thanks.", " Thank you!", " Regards, {name}", " Please help asap.", " Cheers")
_NAMES = ("Maria", "Tom", "Priya", "Kenji", "Fatima", "Lukas")


@dataclass(frozen=True, slots=True)
class Ticket:
    text: str
    queue: str
    family: int  # the template's index within its queue


def ticket(rng: random.Random, queue: str, family: int) -> Ticket:
    body = _TEMPLATES[queue][family]
    for key, fill in _FILL.items():
        if "{" + key + "}" in body:
            body = body.replace("{" + key + "}", fill(rng))
    text = rng.choice(_GREETINGS) + body + rng.choice(_SIGNOFFS).replace("{name}", rng.choice(_NAMES))
    if rng.random() < 0.2:  # a typo: two adjacent letters swapped
        i = rng.randrange(1, len(text) - 2)
        text = text[:i] + text[i + 1] + text[i] + text[i + 2 :]
    if rng.random() < 0.15:
        text = text.lower()
    return Ticket(text, queue, family)


def messages(text: str, answer: str | None = None) -> list[dict[str, str]]:
    out = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"Ticket: {text}"}]
    return out + ([{"role": "assistant", "content": answer}] if answer is not None else [])


def held_out(family: int) -> bool:
    """Template families kept for test only: the last of each queue's templates."""
    return family == len(_TEMPLATES[QUEUES[0]]) - 1


def generate(train: int, validation: int, test: int, *, seed: int) -> dict[str, list[Ticket]]:
    """Unique tickets per split, queues balanced; test uses only held-out template families."""
    rng = random.Random(seed)
    seen: set[str] = set()
    splits: dict[str, list[Ticket]] = {"train": [], "validation": [], "test": []}
    for split, count in (("train", train), ("validation", validation), ("test", test)):
        families = [f for f in range(len(_TEMPLATES[QUEUES[0]])) if held_out(f) == (split == "test")]
        while len(splits[split]) < count:
            queue = QUEUES[len(splits[split]) % len(QUEUES)]
            made = ticket(rng, queue, rng.choice(families))
            if made.text not in seen:
                seen.add(made.text)
                splits[split].append(made)
    return splits


def correct(answer: str, queue: str) -> bool:
    """The first queue name the answer mentions is the right one (lenient to "Queue: billing.")."""
    text = answer.lower().replace(" ", "_").replace("-", "_")
    found = sorted((text.find(q), q) for q in QUEUES if q in text)
    return bool(found) and found[0][1] == queue


def write(data_dir: Path, name: str, splits: dict[str, list[Ticket]], *, seed: int) -> Path:
    """The tickets as a margin dataset (`margin tune train --dataset NAME` reads it)."""
    rows: dict[str, list[dict[str, Any]]] = {}
    for split, tickets in splits.items():
        rows[split] = [{"messages": (m := messages(t.text, t.queue)), "id": example_id(m)} for t in tickets]
    manifest = DatasetManifest(
        name=name,
        source="jsonl",
        group=None,
        team=None,
        teacher=None,  # exact answers stand in for the teacher
        created=time.time(),
        counts={split: len(r) for split, r in rows.items()},
        redaction=False,
        settings={"example": "tickets", "seed": seed},
    )
    return write_dataset(data_dir, manifest, rows)


def accuracy(answers: Sequence[str], tickets: Sequence[Ticket]) -> float:
    return sum(correct(a, t.queue) for a, t in zip(answers, tickets, strict=True)) / max(1, len(tickets))
