"""How every command prints JSON (`--json`): orjson, indented by two, one trailing newline from click."""

from __future__ import annotations

import click
import orjson


def json_text(body: object) -> str:
    return orjson.dumps(body, option=orjson.OPT_INDENT_2).decode()


def echo_json(body: object) -> None:
    click.echo(json_text(body))
