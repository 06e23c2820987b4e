"""The Examples section every `--help` ends with (tests/unit/cli/test_cli_help.py checks them all)."""

from __future__ import annotations

EXAMPLES_HEADING = "Examples:"


def examples(*lines: str) -> str:
    """A command's epilog: example invocations, one per line, printed as written (`\\b` stops click
    from rewrapping them); a line starting with `#` explains the one after it."""
    return "\b\n" + EXAMPLES_HEADING + "\n" + "\n".join(f"  {line}" for line in lines)
