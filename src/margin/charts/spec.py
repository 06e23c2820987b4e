"""A chart as data: the typed spec the planner's report and the dashboard's pages build, emitted as
JSON and drawn in the browser by the vendored Chart.js (static/margin-charts.js turns the spec into a
Chart.js configuration). One palette, keyed by series name, gives a name the same colour in every
chart that shares the palette."""

from __future__ import annotations

import colorsys
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Scale = Literal["linear", "log", "category"]
Format = Literal["number", "usd", "percent", "text"]
MarkerKind = Literal["today", "crossover", "threshold", "point"]

# Okabe-Ito first (colour-blind safe), then Tableau 10's remaining hues, then darker variants:
# 20 distinct colours before any repeats. A name past 20 gets a hash-derived HSL colour.
COLOURS = (
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#8C564B",
    "#7F7F7F", "#BCBD22", "#9467BD", "#17BECF", "#1F3F8F", "#A01010", "#0B5D3B", "#7A2E5C",
    "#9C6B00", "#2A7FA8", "#5C3A2E", "#6B6B00",
)  # fmt: skip


class Palette:
    """Colours by name: the first name asked for (or given) gets the first colour, and so on; asking
    again answers the same colour. Build one per report or page and pass it to every chart on it."""

    def __init__(self, names: Iterable[str] = ()) -> None:
        self._colours: dict[str, str] = {}
        for name in names:
            self[name]

    def __getitem__(self, name: str) -> str:
        colour = self._colours.get(name)
        if colour is None:
            n = len(self._colours)
            colour = COLOURS[n] if n < len(COLOURS) else _hashed_colour(name)
            self._colours[name] = colour
        return colour

    def as_dict(self) -> dict[str, str]:
        return dict(self._colours)


def _hashed_colour(name: str) -> str:
    """A stable mid-dark colour from the name (as #RRGGBB: spreadsheets read it too)."""
    digest = hashlib.sha256(name.encode()).digest()
    red, green, blue = colorsys.hls_to_rgb(digest[0] / 256, (30 + digest[2] % 25) / 100, (55 + digest[1] % 30) / 100)
    return "#" + "".join(f"{round(c * 255):02X}" for c in (red, green, blue))


@dataclass(frozen=True, slots=True)
class Axis:
    """`min`/`max` pin the range (e.g. 0 and 1 for a utilisation axis); `step` the tick spacing on
    a linear axis. Log axes label 1, 2 and 5 times each power of ten only."""

    label: str
    scale: Scale = "linear"
    format: Format = "number"
    min: float | None = None
    max: float | None = None
    step: float | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"label": self.label, "scale": self.scale, "format": self.format}
        for name in ("min", "max", "step"):
            if (value := getattr(self, name)) is not None:
                out[name] = value
        return out


@dataclass(frozen=True, slots=True)
class Series:
    """One line (points as (x, y)) or one bar series (values aligned with the chart's categories)."""

    name: str
    colour: str
    points: Sequence[tuple[float, float]] = ()
    values: Sequence[float | None] = ()
    dashed: bool = False

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "colour": self.colour, "dashed": self.dashed}
        if self.points:
            out["points"] = [[float(x), float(y)] for x, y in self.points]
        else:
            out["values"] = [None if v is None else float(v) for v in self.values]
        return out


@dataclass(frozen=True, slots=True)
class Marker:
    """`x` alone: a vertical line across the chart (today's demand); `x` and `y`: a point (a
    crossover). `id` is unique within the chart (tests and the page look markers up by it). A marker
    that belongs to a `series` (by name) hides with it when its legend entry is clicked."""

    id: str
    kind: MarkerKind
    label: str
    x: float
    y: float | None = None
    colour: str = "#333333"
    series: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "kind": self.kind, "label": self.label, "x": float(self.x)}
        out["colour"] = self.colour
        if self.y is not None:
            out["y"] = float(self.y)
        if self.series is not None:
            out["series"] = self.series
        return out


@dataclass(frozen=True, slots=True)
class ChartSpec:
    """`kind` line: series of (x, y) points; bar: `categories` and one value per category per series
    (`horizontal` bars for rankings). Legends list every series in full; clicking one hides it."""

    kind: Literal["line", "bar"]
    title: str
    x: Axis
    y: Axis
    series: Sequence[Series]
    categories: Sequence[str] = ()
    markers: Sequence[Marker] = ()
    horizontal: bool = False
    stacked: bool = False
    height: int = 360
    legend: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        ids = [m.id for m in self.markers]
        if len(ids) != len(set(ids)):
            raise ValueError(f"marker ids repeat in chart {self.title!r}: {ids}")
        return {
            "kind": self.kind,
            "title": self.title,
            "x": self.x.to_json(),
            "y": self.y.to_json(),
            "series": [s.to_json() for s in self.series],
            "categories": list(self.categories),
            "markers": [m.to_json() for m in self.markers],
            "horizontal": self.horizontal,
            "stacked": self.stacked,
            "height": self.height,
            "legend": self.legend,
            **self.extra,
        }


def line_chart(
    title: str,
    x: Axis,
    y: Axis,
    series: Sequence[Series],
    markers: Sequence[Marker] = (),
    height: int = 380,
    *,
    categories: Sequence[str] = (),
) -> ChartSpec:
    """Lines through (x, y) points; or, with `categories` (e.g. hours or days as labels) and an `x`
    axis of scale "category", through one value per category per series (`Series.values`)."""
    return ChartSpec("line", title, x, y, series, categories=categories, markers=markers, height=height)


def bar_chart(
    title: str,
    categories: Sequence[str],
    series: Sequence[Series],
    value_axis: Axis,
    *,
    category_label: str = "",
    horizontal: bool = False,
    stacked: bool = False,
    height: int | None = None,
) -> ChartSpec:
    """Bars per category. Horizontal: categories down the side, `value_axis` along the bottom."""
    category_axis = Axis(category_label, "category", "text")
    x, y = (value_axis, category_axis) if horizontal else (category_axis, value_axis)
    rows = max(1, len(categories))
    shown_height = height if height is not None else (80 + 28 * rows * (1 if stacked else len(series)) if horizontal
                                                      else 320)  # fmt: skip
    return ChartSpec(
        "bar", title, x, y, series, categories=categories, horizontal=horizontal, stacked=stacked,
        height=min(shown_height, 900), legend=len(series) > 1,
    )  # fmt: skip
