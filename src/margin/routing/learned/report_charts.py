"""The HTML report's charts as data (margin.charts specs, drawn by the vendored Chart.js): PGR against
the strong-call share and against dollars, the router and the random baseline one line each, in the
colour the report's palette gives each name, with the operating points (CPT(50%), CPT(80%) and 95% of
strong-only quality) marked on both lines. Chart coordinates are floats (presentation only); the
report's tables print the same figures."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Literal

import numpy as np

from margin.charts import Axis, ChartSpec, Marker, Palette, Series, line_chart
from margin.routing.learned.curve import RoutingCurve
from margin.routing.learned.evaluation import CurveSummary, Evaluation

ROUTER, RANDOM = "router", "random"
POINTS = 201  # draw the curve faithfully and keep the page small for any number of prompts
# (marker id suffix, label, the summary's share field): the operating points each line is marked at.
OPERATING_POINTS = (
    ("cpt50", "CPT(50%)", "cpt50"),
    ("cpt80", "CPT(80%)", "cpt80"),
    ("q95", "95% quality", "share_at_95"),
)
NEAR_SHARE, NEAR_PGR = 0.1, 0.15  # two operating points this close share one label
XAxis = Literal["share", "cost"]


def report_palette() -> Palette:
    """The router first, the random baseline second: the same two colours in every chart."""
    return Palette((ROUTER, RANDOM))


def share_chart(evaluation: Evaluation, palette: Palette) -> ChartSpec:
    return _chart(
        evaluation,
        palette,
        "share",
        "PGR vs share of calls to the strong tier",
        Axis("share of calls to the strong tier", "linear", "percent", min=0, max=1, step=0.1),
    )


def cost_chart(evaluation: Evaluation, palette: Palette) -> ChartSpec:
    top = max(float(np.max(evaluation.router.cost)), float(np.max(evaluation.random.cost)))
    step = _nice_step(top / 8) if top > 0 else None
    return _chart(
        evaluation,
        palette,
        "cost",
        "PGR vs cost of the evaluated prompts",
        Axis("cost of the evaluated prompts (USD)", "linear", "usd", min=0,
             max=math.ceil(round(top / step, 6)) * step if step else None, step=step),
    )  # fmt: skip


def _nice_step(rough: float) -> float:
    """The smallest of 1, 2, 2.5 and 5 x 10^n at or above `rough`: ticks at round dollar amounts."""
    power = 10.0 ** math.floor(math.log10(rough))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= rough * (1 - 1e-9))


def _chart(evaluation: Evaluation, palette: Palette, x: XAxis, title: str, x_axis: Axis) -> ChartSpec:
    lines = ((ROUTER, evaluation.router, evaluation.router_summary), (RANDOM, evaluation.random,
                                                                       evaluation.random_summary))  # fmt: skip
    series = [Series(name, palette[name], points=_points(curve, x), dashed=name == RANDOM) for name, curve, _ in lines]
    markers = [m for name, curve, summary in lines for m in _markers(name, curve, summary, x, palette[name])]
    return line_chart(title, x_axis, _pgr_axis(evaluation), series, markers, height=420)


def _points(curve: RoutingCurve, x: XAxis) -> list[tuple[float, float]]:
    index = np.unique(np.linspace(0, curve.strong_share.size - 1, POINTS).round().astype(np.intp))
    xs = curve.strong_share[index] if x == "share" else curve.cost[index]
    return [(float(a), float(b)) for a, b in zip(xs, curve.pgr[index], strict=True)]


def _markers(name: str, curve: RoutingCurve, summary: CurveSummary, x: XAxis, colour: str) -> list[Marker]:
    """A point on the line at each operating point; the router's are labelled with their share (and
    dollars on the cost chart), the baseline's are not (the tables give both)."""
    markers: list[Marker] = []
    labelled: list[tuple[int, float, float]] = []  # (index in markers, share, PGR) of each label
    for suffix, label, field in OPERATING_POINTS:
        share = float(getattr(summary, field))
        pgr = float(np.interp(share, curve.strong_share, curve.pgr))
        cost = float(np.interp(share, curve.strong_share, curve.cost))
        dollars = f", ${cost:,.2f}" if x == "cost" else ""
        text = f"{label}: {share:.0%} strong{dollars}" if name == ROUTER else ""
        near = next((i for i, s, p in labelled if abs(s - share) < NEAR_SHARE and abs(p - pgr) < NEAR_PGR), None)
        if text and near is not None:  # one label of two lines, not two labels drawn over each other
            markers[near] = replace(markers[near], label=f"{markers[near].label}\n{text}")
            text = ""
        elif text:
            labelled.append((len(markers), share, pgr))
        markers.append(Marker(f"{name}:{suffix}", "point", text, share if x == "share" else cost, pgr, colour, name))
    return markers


def _pgr_axis(evaluation: Evaluation) -> Axis:
    """0 to 1 with a tick every 0.1, widened to whole tenths when a line leaves that range."""
    low = min(0.0, float(np.min(evaluation.router.pgr)), float(np.min(evaluation.random.pgr)))
    high = max(1.0, float(np.max(evaluation.router.pgr)), float(np.max(evaluation.random.pgr)))
    low, high = math.floor(round(low * 10, 6)) / 10, math.ceil(round(high * 10, 6)) / 10
    return Axis("performance gap recovered (PGR)", "linear", "number", min=low, max=high,
                step=0.1 if high - low <= 1.5 else None)  # fmt: skip
