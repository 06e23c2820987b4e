"""The chart spec: one colour per name wherever the palette is shared, and JSON the renderer reads."""

from __future__ import annotations

import re

import pytest

from margin.charts import COLOURS, Axis, Marker, Palette, Series, bar_chart, line_chart


def test_a_name_keeps_its_colour_and_names_get_distinct_colours() -> None:
    palette = Palette(["api:a", "vllm:b"])
    assert palette["vllm:b"] == COLOURS[1] and palette["api:a"] == COLOURS[0]
    names = [f"option {i}" for i in range(30)]
    colours = [palette[n] for n in names]
    assert len(set(colours)) == 32 - 2  # 30 new names, none sharing a colour
    assert [palette[n] for n in names] == colours  # asked again: the same answer
    assert len(set(COLOURS)) == len(COLOURS) == 20
    assert all(re.fullmatch(r"#[0-9A-F]{6}", c) for c in colours)  # past the 20: hashed, still #RRGGBB


def test_line_spec_json() -> None:
    spec = line_chart(
        "t", Axis("utilisation", "linear", "percent", 0, 1, 0.1), Axis("$", "log", "usd"),
        [Series("a", "#111111", points=[(0.5, 2.0)], dashed=True)],
        [Marker("today", "today", "today 1,000/day", 0.5), Marker("crossover:a", "crossover", "pays", 0.7, 3.0)],
    )  # fmt: skip
    out = spec.to_json()
    assert out["x"] == {"label": "utilisation", "scale": "linear", "format": "percent", "min": 0, "max": 1, "step": 0.1}
    assert out["series"] == [{"name": "a", "colour": "#111111", "dashed": True, "points": [[0.5, 2.0]]}]
    assert [m.get("y") for m in out["markers"]] == [None, 3.0]


def test_marker_ids_must_be_unique() -> None:
    spec = line_chart("t", Axis("x"), Axis("y"), [], [Marker("m", "today", "a", 1), Marker("m", "today", "b", 2)])
    with pytest.raises(ValueError, match="marker ids repeat"):
        spec.to_json()


def test_horizontal_bars_put_categories_down_the_side() -> None:
    spec = bar_chart("Spend by team", ["a", "b"], [Series("spend", "#000", values=[1.0, 2.5])],
                     Axis("$ this month", format="usd"), horizontal=True)  # fmt: skip
    out = spec.to_json()
    assert out["y"]["scale"] == "category" and out["x"]["format"] == "usd" and out["horizontal"]
    assert out["series"][0]["values"] == [1.0, 2.5] and out["legend"] is False
