"""Charts as server-side SVG (no script, no external asset): the pages work offline."""

from __future__ import annotations

from decimal import Decimal
from html import escape

BAR_HEIGHT, GAP, LABEL_WIDTH, WIDTH = 22, 6, 160, 520


def bar_chart(title: str, bars: list[tuple[str, Decimal]], unit: str = "$") -> str:
    """Horizontal bars, the longest as wide as the chart; each bar says its value."""
    if not bars:
        return f'<p class="empty">{escape(title)}: nothing yet this period.</p>'
    largest = max(value for _, value in bars) or Decimal(1)
    height = len(bars) * (BAR_HEIGHT + GAP)
    rows = []
    for i, (label, value) in enumerate(bars):
        y = i * (BAR_HEIGHT + GAP)
        width = int((WIDTH - LABEL_WIDTH - 90) * value / largest) if value > 0 else 0
        rows.append(
            f'<text x="0" y="{y + 15}">{escape(label[:24])}</text>'
            f'<rect x="{LABEL_WIDTH}" y="{y}" width="{width}" height="{BAR_HEIGHT}" rx="3"/>'
            f'<text x="{LABEL_WIDTH + width + 6}" y="{y + 15}">{escape(unit)}{escape(str(value))}</text>'
        )
    return (
        f'<svg role="img" aria-label="{escape(title)}" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}">'
        f"<title>{escape(title)}</title>{''.join(rows)}</svg>"
    )
