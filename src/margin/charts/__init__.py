"""Charts for margin's HTML: the planner's report and the dashboard's pages build a typed spec
(`spec.py`: axes, series, markers, one palette keyed by series name), emitted as JSON and drawn in
the browser by Chart.js 4 with chartjs-plugin-annotation, vendored with their licences and pinned
sha256 (`assets.py`, vendor/VERSIONS.json). No network: a page inlines the scripts or serves them
from its own origin."""

from margin.charts.assets import asset_bytes, asset_names, chart_html, inline_scripts, script_tags, vendored
from margin.charts.spec import COLOURS, Axis, ChartSpec, Marker, Palette, Series, bar_chart, line_chart

__all__ = [
    "COLOURS",
    "Axis",
    "ChartSpec",
    "Marker",
    "Palette",
    "Series",
    "asset_bytes",
    "asset_names",
    "bar_chart",
    "chart_html",
    "inline_scripts",
    "line_chart",
    "script_tags",
    "vendored",
]
