"""PII redaction: each kind found and replaced, look-alikes left alone (Luhn, mod-97, IP parsing)."""

from __future__ import annotations

import pytest

from margin.evals.redact import iban_ok, luhn_ok, redact


@pytest.mark.parametrize(
    ("text", "expected", "label"),
    [
        ("write to ana.silva+news@example.co.uk today", "write to [EMAIL] today", "EMAIL"),
        ("call +44 20 7946 0958 now", "call [PHONE] now", "PHONE"),
        ("or (415) 555-0132", "or [PHONE]", "PHONE"),
        ("card 4111 1111 1111 1111 exp 12/29", "card [CARD] exp 12/29", "CARD"),
        ("pay to DE89 3704 0044 0532 0130 00 please", "pay to [IBAN] please", "IBAN"),
        ("from 192.168.10.254 at noon", "from [IP] at noon", "IP"),
        ("host 2001:db8::8a2e:370:7334 down", "host [IP] down", "IP"),
        ("key sk-proj-abcdefghijklmnop1234567890XY leaked", "key [SECRET] leaked", "SECRET"),
        ("AKIAIOSFODNN7EXAMPLE in the logs", "[SECRET] in the logs", "SECRET"),
        ("Authorization: Bearer abcdefghijklmnopqrstuvwxyz012345", "Authorization: [SECRET]", "SECRET"),
        ("api_key=9f8e7d6c5b4a3210 and more", "[SECRET] and more", "SECRET"),
    ],
)
def test_each_kind_is_redacted(text: str, expected: str, label: str) -> None:
    out = redact(text)
    assert out.text == expected
    assert out.found == {label: 1}


@pytest.mark.parametrize(
    "text",
    [
        "order 4111 1111 1111 1112 shipped",  # fails Luhn: not a card
        "DE89 3704 0044 0532 0130 01 is a typo",  # fails mod-97: not an IBAN
        "version 1.2.3.4000 released",  # not an IP address
        "999.1.1.1 is no address",
        "the answer is 42 and 1999 was a year",  # too few digits for a phone
    ],
)
def test_look_alikes_are_left_alone(text: str) -> None:
    assert redact(text).text == text


def test_checks() -> None:
    assert luhn_ok("79927398713") and not luhn_ok("79927398710")
    assert iban_ok("GB82 WEST 1234 5698 7654 32") and not iban_ok("GB82 WEST 1234 5698 7654 33")


def test_several_findings_are_counted() -> None:
    out = redact("a@b.io, c@d.org and 10.0.0.1")
    assert out.text == "[EMAIL], [EMAIL] and [IP]" and out.found == {"EMAIL": 2, "IP": 1}
