"""The browser side of the charts: Chart.js and chartjs-plugin-annotation vendored unmodified in
vendor/ (pinned versions, licences and sha256 in vendor/VERSIONS.json) and margin's own renderer
static/margin-charts.js. A page either links them from a local static route (the dashboard:
`script_tags`) or carries them inline (the planner's single-file report: `inline_scripts`), and
places each chart with `chart_html`: a canvas plus its spec as JSON. Nothing is fetched from
outside the page's origin."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cache
from html import escape
from importlib import resources
from importlib.resources.abc import Traversable

from margin.charts.spec import ChartSpec
from margin.errors import MarginError

RENDERER = "margin-charts.js"


@dataclass(frozen=True, slots=True)
class VendoredPackage:
    name: str
    version: str
    license: str
    file: str
    sha256: str
    license_file: str
    license_sha256: str


def _package_dir() -> Traversable:
    return resources.files("margin.charts")


@cache
def vendored() -> tuple[VendoredPackage, ...]:
    manifest = json.loads((_package_dir() / "vendor" / "VERSIONS.json").read_text("utf-8"))
    fields = VendoredPackage.__slots__
    return tuple(VendoredPackage(**{k: p[k] for k in fields}) for p in manifest["packages"])


def asset_names() -> tuple[str, ...]:
    """The scripts a page loads, in order: the libraries, then the renderer."""
    return (*(p.file for p in vendored()), RENDERER)


@cache
def asset_bytes(name: str) -> bytes:
    """A script by its name in `asset_names()` (anything else is a KeyError: the dashboard's static
    route serves this list and nothing else). Vendored files are checked against their sha256."""
    if name == RENDERER:
        return (_package_dir() / "static" / RENDERER).read_bytes()
    package = next((p for p in vendored() if p.file == name), None)
    if package is None:
        raise KeyError(name)
    data = (_package_dir() / "vendor" / name).read_bytes()
    if hashlib.sha256(data).hexdigest() != package.sha256:
        raise MarginError(f"vendor/{name} differs from the sha256 pinned for {package.name} {package.version}")
    return data


def script_tags(prefix: str) -> str:
    """`<script src>` tags for a page whose static route serves `asset_names()` under `prefix`."""
    return "".join(f'<script src="{escape(prefix.rstrip("/"))}/{name}" defer></script>' for name in asset_names())


def inline_scripts() -> str:
    """The scripts inline, for a single-file page that must open offline. Each library keeps its
    licence banner; a comment names the pinned versions."""
    versions = ", ".join(f"{p.name} {p.version} ({p.license})" for p in vendored())
    bodies = "".join(f"<script>{_inline_script(name)}</script>" for name in asset_names())
    return f"<!-- charts: {escape(versions)}; see margin/charts/vendor/VERSIONS.json -->{bodies}"


def chart_html(spec: ChartSpec, chart_id: str) -> str:
    """A chart's place on the page: a sized box with a canvas, and the spec as JSON beside it (a
    data block, never executed: it passes a strict Content-Security-Policy)."""
    data = _script_safe(json.dumps(spec.to_json(), separators=(",", ":"), allow_nan=False))
    safe_id = escape(chart_id)
    return (
        f'<figure class="margin-chart" style="position:relative;height:{spec.height}px;margin:1rem 0">'
        f'<canvas id="{safe_id}" data-chart-spec="{safe_id}-spec" role="img" aria-label="{escape(spec.title)}">'
        f"{escape(spec.title)}</canvas>"
        f'<script type="application/json" id="{safe_id}-spec">{data}</script></figure>'
    )


def _inline_script(name: str) -> str:
    text = asset_bytes(name).decode("utf-8")
    if "</script" in text.lower():
        raise MarginError(f"{name} cannot be inlined: it contains a closing script tag")
    return text


def _script_safe(text: str) -> str:
    """JSON that cannot end its <script> element early nor open a comment in it: every `<` is
    written as its JSON escape (the same string once parsed)."""
    return text.replace("<", "\\u003c")
