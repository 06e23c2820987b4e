"""PII redaction before a production request is stored in a rolling eval set (docs/evals.md,
"Production samples"). Pure functions over text; each finding is replaced by a typed placeholder
(`[EMAIL]`, `[PHONE]`, `[CARD]`, `[IBAN]`, `[IP]`, `[SECRET]`) and counted.

Checks beyond the pattern keep false positives down where a pattern alone would over-match: a card
number must pass the Luhn check, an IBAN the ISO 13616 mod-97 check, an IP address must parse.
Names and postal addresses need a named-entity model: that is an optional extra (Presidio), not this.
Order matters: secrets and card numbers are replaced before phone numbers, whose pattern would
otherwise take their digits.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field

_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_SECRET = re.compile(
    r"\b(?:"
    r"sk-(?:proj-|ant-|margin-)?[A-Za-z0-9_-]{16,}"  # OpenAI, Anthropic, margin's own keys
    r"|AKIA[0-9A-Z]{16}"  # AWS access key id
    r"|gh[pousr]_[A-Za-z0-9]{30,}"  # GitHub tokens
    r"|xox[abpr]-[A-Za-z0-9-]{10,}"  # Slack tokens
    r"|AIza[0-9A-Za-z_-]{35}"  # Google API keys
    r"|eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}"  # JWTs
    r")"
    r"|(?i:\bbearer\s+)[A-Za-z0-9._~+/-]{20,}=*"  # an Authorization header's token
    r"|(?i:\b(?:api[_-]?key|secret|token|password|passwd)\b\s*[:=]\s*)[^\s'\",;]{8,}"  # key=VALUE
)
_CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]){11,30}\b")
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
_PHONE = re.compile(r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]?\d{2,4}){2,4}(?![\w])")


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, char in enumerate(reversed(digits)):
        value = int(char)
        if i % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def iban_ok(text: str) -> bool:
    compact = text.replace(" ", "")
    if not 15 <= len(compact) <= 34:
        return False
    moved = compact[4:] + compact[:4]
    number = "".join(str(int(c, 36)) for c in moved)  # A=10 ... Z=35
    return int(number) % 97 == 1


def _card(match: re.Match[str]) -> bool:
    digits = re.sub(r"\D", "", match.group())
    return 13 <= len(digits) <= 19 and luhn_ok(digits)


def _ip(match: re.Match[str]) -> bool:
    try:
        ipaddress.ip_address(match.group())
    except ValueError:
        return False
    return True


def _phone(match: re.Match[str]) -> bool:
    digits = re.sub(r"\D", "", match.group())
    return 7 <= len(digits) <= 15


@dataclass(frozen=True, slots=True)
class Rule:
    label: str
    pattern: re.Pattern[str]
    check: Callable[[re.Match[str]], bool] | None = None


RULES = (
    Rule("SECRET", _SECRET),
    Rule("EMAIL", _EMAIL),
    Rule("IBAN", _IBAN, lambda m: iban_ok(m.group())),
    Rule("CARD", _CARD, _card),
    Rule("IP", _IPV4, _ip),
    Rule("IP", _IPV6, _ip),
    Rule("PHONE", _PHONE, _phone),
)


@dataclass(slots=True)
class Redacted:
    text: str
    found: dict[str, int] = field(default_factory=dict)


def redact(text: str) -> Redacted:
    out = Redacted(text)
    for rule in RULES:
        out.text = rule.pattern.sub(functools.partial(_replace, rule=rule, out=out), out.text)
    return out


def _replace(match: re.Match[str], rule: Rule, out: Redacted) -> str:
    if rule.check is not None and not rule.check(match):
        return match.group()
    out.found[rule.label] = out.found.get(rule.label, 0) + 1
    return f"[{rule.label}]"
