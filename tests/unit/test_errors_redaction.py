"""Upstream error text reaches clients and logs only after key-shaped parts are redacted."""

from __future__ import annotations

import pytest

from margin import errors
from margin.errors import redact_json, redact_secrets

SECRETS = [
    "sk-proj-AbCdEf0123456789xyz",
    "sk-ant-api03-abcdefghijklmnop",
    "sk-margin-0123456789abcdef",
    "AKIAIOSFODNN7EXAMPLE",
    "AIzaSyA1234567890abcdefghijklmnopqrstu",
    "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
    "hf_abcdefghijklmnopqrstuvwx",
    "gsk_abcdefghijklmnopqrstuvwx",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.sig-nature_part",
]


@pytest.mark.parametrize("secret", SECRETS)
def test_key_shaped_tokens_are_redacted(secret: str) -> None:
    shown = redact_secrets(f"upstream said: bad key {secret}, try again")
    assert secret not in shown and shown == "upstream said: bad key [redacted], try again"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Incorrect API key provided: sk-ab***wxyz. See docs.", "Incorrect API key provided: [redacted]. See docs."),
        ("Authorization: Bearer abc.def-123456", "Authorization: Bearer [redacted]"),
        (
            '{"api_key": "hunter2hunter2", "x-api-key": "k3y-v4lue"}',
            '{"api_key": "[redacted]", "x-api-key": "[redacted]"}',
        ),
        ("password=opensesame&user=bob", "password=[redacted]&user=bob"),
    ],
)
def test_credentials_in_assignments_and_headers_are_redacted(text: str, expected: str) -> None:
    assert redact_secrets(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "This model's maximum context length is 8192 tokens; you asked for max_tokens=9000.",
        "task-force: the risk-model answered 503",
        "Rate limit reached for gpt-4o in organization org-abc on tokens per min (TPM)",
    ],
)
def test_ordinary_error_text_is_left_alone(text: str) -> None:
    assert redact_secrets(text) == text


def test_every_upstream_error_redacts_its_message_and_details() -> None:
    error = errors.ContentFiltered(
        "d: upstream answered 400: key sk-live-0123456789",
        deployment="d",
        details={"provider_details": {"echo": ["Bearer sk-live-0123456789"], "n": 3}},
    )
    assert "sk-live" not in error.message and "sk-live" not in str(error)
    assert error.details == {"provider_details": {"echo": ["Bearer [redacted]"], "n": 3}}
    assert redact_json({"a": ("token: abcdef",)}) == {"a": ["token: [redacted]"]}
