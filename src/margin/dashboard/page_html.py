"""HTML of the pages that share `margin.dashboard.tables`' shape: a navigation bar, the window,
notes, summary cards and tables, every figure tagged `data-figure="<path in the JSON twin>"` and
showing the twin's exact text (`n/a` for null)."""

from __future__ import annotations

from html import escape
from typing import Any
from urllib.parse import urlencode

from margin.dashboard.pages import document

NAV = (
    ("Overview", "/dashboard"), ("Spend", "/dashboard/spend"), ("Performance", "/dashboard/performance"),
    ("Budgets", "/dashboard/budgets"), ("Cache", "/dashboard/cache"), ("Rollouts and batches", "/dashboard/rollouts"),
    ("Planner", "/dashboard/planner"),
)  # fmt: skip


def figure(path: str, value: Any) -> str:
    shown = "n/a" if value is None else str(value)
    return f'<span data-figure="{escape(path)}">{escape(shown)}</span>'


def nav(csrf: str) -> str:
    links = " · ".join(f'<a href="{href}">{escape(name)}</a>' for name, href in NAV)
    return (
        f"<nav>{links} "
        '<form class="inline" method="post" action="/dashboard/logout">'
        f'<input type="hidden" name="csrf" value="{escape(csrf)}"><button type="submit">Log out</button></form></nav>'
    )


def figures_page(
    title: str,
    figures: dict[str, Any],
    csrf: str,
    *,
    twin: str,
    query: dict[str, str] | None = None,
    controls: str = "",
    charts: str = "",
) -> str:
    """The page; `query` is what the request asked (the twin link asks the same)."""
    scope = "".join(
        f' · {kind} <span data-figure="scope.{kind}">{escape(name)}</span>'
        for kind, name in figures["scope"].items() if name is not None
    )  # fmt: skip
    win = figures.get("window")
    when = (
        f'<p>From {figure("window.since", win["since"])} to {figure("window.until", win["until"])} (UTC). '
        if win else "<p>"
    )  # fmt: skip
    asked = {k: v for k, v in (query or {}).items() if v}
    link = twin + (f"?{urlencode(asked)}" if asked else "")
    notes = "".join(f'<p class="note">{escape(note)}</p>' for note in figures["notes"])
    cards = "".join(
        f'<div class="card">{escape(name.replace("_", " "))}<b>{figure(f"summary.{name}", value)}</b></div>'
        for name, value in figures["summary"].items()
    )
    tables = "".join(_table(name, spec) for name, spec in figures["tables"].items())
    return document(
        title,
        f"{nav(csrf)}<h1>{escape(title)}{scope}</h1>{controls}"
        f'{when}JSON: <a href="{escape(link)}">{escape(link)}</a></p>{notes}'
        f'<div class="cards">{cards}</div>{charts}{tables}',
    )


def _table(name: str, spec: dict[str, Any]) -> str:
    head = "".join(f"<th>{escape(column)}</th>" for column in spec["columns"])
    body = "".join(
        "<tr>" + "".join(
            f'<td class="n">{figure(f"tables.{name}.rows.{i}.{j}", value)}</td>' for j, value in enumerate(row)
        ) + "</tr>"
        for i, row in enumerate(spec["rows"])
    )  # fmt: skip
    empty = "" if spec["rows"] else '<p class="empty">Nothing in this window.</p>'
    return f"<h2>{escape(spec['title'])}</h2>{empty}<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def spend_controls(query: dict[str, str], by_choices: tuple[str, ...]) -> str:
    """A GET form for the explorer's grouping, period, window and filters, and the CSV links."""

    def select(name: str, choices: tuple[str, ...], current: str) -> str:
        options = "".join(
            f'<option{" selected" if c == current else ""}>{escape(c)}</option>' for c in choices
        )  # fmt: skip
        return f'<label>{name} <select name="{name}">{options}</select></label> '

    def text(name: str) -> str:
        return f'<label>{name} <input name="{name}" value="{escape(query.get(name, ""))}" size="10"></label> '

    csv = urlencode({k: v for k, v in query.items() if v})
    return (
        '<form method="get" action="/dashboard/spend">'
        f"{select('by', by_choices, query.get('by', 'team'))}"
        f"{select('period', ('day', 'hour'), query.get('period', 'day'))}"
        f'{text("since")}{text("until")}{text("team")}{text("org")}<button type="submit">Show</button></form>'
        f'<p>CSV: <a href="/dashboard/spend.csv?{escape(csv)}">groups</a> · '
        f'<a href="/dashboard/spend.csv?{escape(csv + ("&" if csv else "") + "table=series")}">series</a></p>'
    )
