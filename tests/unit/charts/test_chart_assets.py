"""The vendored chart libraries are the pinned, unmodified npm files with their licences (issue 21
section 1), and the page fragments that carry them cannot break out of their elements."""

from __future__ import annotations

import hashlib
import json
from importlib import resources

import pytest

from margin.charts import (
    Axis,
    Marker,
    Series,
    asset_bytes,
    asset_names,
    chart_html,
    inline_scripts,
    line_chart,
    script_tags,
    vendored,
)
from margin.errors import MarginError

VENDOR = resources.files("margin.charts") / "vendor"


def test_every_vendored_file_matches_its_pinned_sha256_and_carries_its_licence() -> None:
    manifest = json.loads((VENDOR / "VERSIONS.json").read_text("utf-8"))
    names = {p["name"]: p["version"] for p in manifest["packages"]}
    assert names["chart.js"].startswith("4.") and names["chartjs-plugin-annotation"].startswith("3.")
    for package in manifest["packages"]:
        body = (VENDOR / package["file"]).read_bytes()
        assert hashlib.sha256(body).hexdigest() == package["sha256"], package["file"]
        assert f"v{package['version']}" in body[:300].decode(), package["file"]  # the banner names the version
        licence = (VENDOR / package["license_file"]).read_bytes()
        assert hashlib.sha256(licence).hexdigest() == package["license_sha256"]
        assert licence.startswith(b"The MIT License") and package["license"] == "MIT"
        assert package["tarball"].startswith("https://registry.npmjs.org/") and package["integrity"]


def test_a_modified_vendored_file_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    asset_bytes.cache_clear()
    real = vendored()
    tampered = tuple(p.__class__(**{**{k: getattr(p, k) for k in p.__slots__}, "sha256": "0" * 64}) for p in real)
    monkeypatch.setattr("margin.charts.assets.vendored", lambda: tampered)
    with pytest.raises(MarginError, match="differs from the sha256 pinned"):
        asset_bytes(real[0].file)
    asset_bytes.cache_clear()


def test_only_the_listed_scripts_are_assets() -> None:
    assert asset_names() == ("chart.umd.min.js", "chartjs-plugin-annotation.min.js", "margin-charts.js")
    with pytest.raises(KeyError):
        asset_bytes("VERSIONS.json")
    with pytest.raises(KeyError):
        asset_bytes("../assets.py")
    tags = script_tags("/dashboard/static/")
    assert tags.count('<script src="/dashboard/static/') == 3 and "//" not in tags.replace("://", "")


def test_inline_scripts_carry_every_library_whole() -> None:
    html = inline_scripts()
    for name in asset_names():
        assert asset_bytes(name).decode() in html
    assert html.count("<script>") == 3 and "http" not in html.split("<script>")[0]


def test_a_spec_cannot_close_its_script_element() -> None:
    hostile = "</script><script>alert(1)</script>"
    spec = line_chart(hostile, Axis("x"), Axis("y"), [Series(hostile, "#000", points=[(1, 2)])],
                      [Marker("today", "today", hostile, 1.0)])  # fmt: skip
    html = chart_html(spec, "c1")
    assert html.count("</script>") == 1 and "<script>" not in html
    data = html.split('type="application/json" id="c1-spec">')[1].removesuffix("</script></figure>")
    assert json.loads(data)["title"] == hostile
