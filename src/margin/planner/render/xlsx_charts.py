"""Native Excel charts for the XLSX workbook, on a Charts sheet beside the live formulas they plot:
per class, cost vs volume (every option the report lists: the hosted curves are the Curve sheet's
formula rows, the APIs' lines are formula rows here over the Assumptions prices; today's demand and
the crossovers are formula cells too) and total $/month per option at each growth scenario (the
Results sheet's total column). Change an assumption and the charts move with the formulas. Colours are
the HTML report's (one per option, chart_specs.plan_palette)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from margin.charts import Palette
from margin.planner.amounts import to_decimal
from margin.planner.costing import api_cost_per_request
from margin.planner.crossover import self_cost_curve
from margin.planner.plan import ClassPlan, Plan
from margin.planner.render.chart_specs import option_labels

SHEET = "Charts"
TODAY_COLOUR = "#1D2433"
CHART_WIDTH, CHART_HEIGHT = 960, 520  # pixels
CHART_ROWS = 28  # spreadsheet rows one chart takes up


@dataclass(frozen=True)
class CurveRows:
    """Where render_xlsx wrote one hosted option's curve (Curve sheet, 0-based rows: volumes, self-hosted
    $/month, comparison API $/month) and its crossover cell."""

    class_name: str
    option_id: str
    row: int
    crossover: str


@dataclass(frozen=True)
class ResultRows:
    """The Results sheet's first row (0-based) of one option of one class; one row per scenario."""

    class_name: str
    option_id: str
    row: int


@dataclass(frozen=True)
class Formulas:
    """What the chart-data formulas need from the workbook's layout."""

    volume_today: dict[str, str]  # class -> formula of today's requests/day
    api_per_request: dict[tuple[str, str], str]  # (class, api option id) -> formula of $ per request
    days: str  # formula of days per month
    grid: Sequence[float]  # volume factors (the Curve sheet's)


def xl_col_to_name(col: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA (xlsxwriter's utility of the same name; only xlsx.py imports
    xlsxwriter, an import-linter contract)."""
    name = ""
    col += 1
    while col:
        col, rest = divmod(col - 1, 26)
        name = chr(ord("A") + rest) + name
    return name


def _ref(sheet: str, row: int, first_col: int, last_col: int) -> str:
    return f"='{sheet}'!${xl_col_to_name(first_col)}${row + 1}:${xl_col_to_name(last_col)}${row + 1}"


def _cell(row: int, col: int) -> str:
    return f"'{SHEET}'!${xl_col_to_name(col)}${row + 1}"


def add_charts(
    book: Any,
    plan: Plan,
    palette: Palette,
    formulas: Formulas,
    curves: Sequence[CurveRows],
    results: Sequence[ResultRows],
) -> None:
    ws = book.add_worksheet(SHEET)
    bold = book.add_format({"bold": True})
    row = len(plan.classes) * CHART_ROWS + 1  # the charts on top, their data below
    ws.write(row, 0, "Chart data: live formulas over the Assumptions, Curve and Results sheets", bold)
    row += 2
    for i, cp in enumerate(plan.classes):
        own = [c for c in curves if c.class_name == cp.name]
        cost, row = _cost_chart(book, ws, cp, plan, palette, formulas, own, row, bold)
        ws.insert_chart(i * CHART_ROWS, 0, cost)
        totals = _totals_chart(book, cp, palette, [r for r in results if r.class_name == cp.name])
        ws.insert_chart(i * CHART_ROWS, 16, totals)
        row += 2


def _line(colour: str, dashed: bool = False) -> dict[str, Any]:
    line: dict[str, Any] = {"color": colour, "width": 1.75}
    if dashed:
        line["dash_type"] = "dash"
    return line


def _cost_chart(
    book: Any,
    ws: Any,
    cp: ClassPlan,
    plan: Plan,
    palette: Palette,
    formulas: Formulas,
    curves: Sequence[CurveRows],
    row: int,
    bold: Any,
) -> tuple[Any, int]:
    """The chart-data block of one class (APIs' cost rows, today's demand, the crossovers) and its chart."""
    chart = book.add_chart({"type": "scatter", "subtype": "straight"})
    last = 2 + len(formulas.grid) - 1
    ws.write(row, 0, f"{cp.name}: requests/day", bold)
    for k, factor in enumerate(formulas.grid):
        cached = cp.scenarios[0].demand.requests_per_day * factor
        ws.write_formula(row, 2 + k, f"={formulas.volume_today[cp.name]}*{factor!r}", None, cached)
    volumes, ranges = row, []
    row += 1
    by_option = {c.option_id: c for c in curves}
    apis = {o.id for o in cp.apis}
    for option_id, label in option_labels(cp).items():
        curve = by_option.get(option_id)
        if curve is not None:
            x, y, dashed = _ref("Curve", curve.row, 2, last), _ref("Curve", curve.row + 1, 2, last), False
        elif option_id in apis:
            _api_row(ws, cp, plan, formulas, option_id, label, volumes, row)
            x, y, dashed = _ref(SHEET, volumes, 2, last), _ref(SHEET, row, 2, last), True
            row += 1
        else:
            continue  # a hosted option without a curve (no comparison API): nothing to draw against
        chart.add_series({"name": label, "categories": x, "values": y, "line": _line(palette[label], dashed),
                          "marker": {"type": "none"}})  # fmt: skip
        ranges.append(y.removeprefix("="))
    row = _today_series(ws, chart, cp, formulas, (ranges, _cost_bounds(cp, plan, formulas)), row, bold)
    row = _crossover_series(ws, chart, cp, curves, formulas, row, bold)
    chart.set_title({"name": f"{cp.name}: monthly cost vs volume (live: follows the Assumptions sheet)"})
    chart.set_x_axis({"name": "requests/day (log)", "log_base": 10, "num_format": "#,##0",
                      "major_gridlines": {"visible": True, "line": {"color": "#E3E6EC"}}})  # fmt: skip
    chart.set_y_axis({"name": "$ per month (log)", "log_base": 10, "num_format": "$#,##0"})
    chart.set_legend({"position": "bottom"})
    chart.set_size({"width": CHART_WIDTH, "height": CHART_HEIGHT})
    return chart, row


def _api_row(ws: Any, cp: ClassPlan, plan: Plan, formulas: Formulas, option_id: str, label: str, volumes: int,
             row: int) -> None:  # fmt: skip
    """An API's $/month at each volume of the block: volume x its $ per request (Assumptions prices)."""
    today = cp.scenarios[0].demand
    per_request = api_cost_per_request(cp.api_price(option_id), today)
    days = to_decimal(plan.catalog.assumptions.hours_per_month.value) / 24
    ws.write(row, 0, label)
    ws.write(row, 1, "$/month")
    for k, factor in enumerate(formulas.grid):
        cell = f"{xl_col_to_name(2 + k)}{volumes + 1}"
        cached = float(per_request * Decimal(repr(today.requests_per_day * factor)) * days)
        formula = f"={cell}*{formulas.api_per_request[(cp.name, option_id)]}*{formulas.days}"
        ws.write_formula(row, 2 + k, formula, None, cached)


def _cost_bounds(cp: ClassPlan, plan: Plan, formulas: Formulas) -> tuple[float, float]:
    """The lowest and highest $/month plotted (every cost rises with volume: the grid's ends), as the
    cached values of the today line's ends."""
    today = cp.scenarios[0].demand
    ends = [today.requests_per_day * formulas.grid[0], today.requests_per_day * formulas.grid[-1]]
    days = to_decimal(plan.catalog.assumptions.hours_per_month.value) / 24
    costs: list[Decimal] = []
    for option_id in option_labels(cp):
        hosted = next((h for h in cp.hosted if h.option.id == option_id), None)
        if hosted is not None:
            costs += self_cost_curve(ends, hosted.capacity, today, hosted.pricing, plan.catalog)
        elif option_id in {o.id for o in cp.apis}:
            per_request = api_cost_per_request(cp.api_price(option_id), today)
            costs += [per_request * Decimal(repr(v)) * days for v in ends]
    return (float(min(costs)), float(max(costs))) if costs else (1.0, 1.0)


def _today_series(ws: Any, chart: Any, cp: ClassPlan, formulas: Formulas,
                  plotted: tuple[list[str], tuple[float, float]], row: int, bold: Any) -> int:  # fmt: skip
    """Today's demand as a vertical line: two points at today's volume, from the lowest cost plotted
    to the highest (`plotted`: the ranges plotted, and their cached lowest and highest)."""
    ranges, (low, high) = plotted
    today = cp.scenarios[0].demand.requests_per_day
    ws.write(row, 0, "today: requests/day", bold)
    ws.write(row + 1, 0, "today: $/month (line ends)", bold)
    for col in (2, 3):
        ws.write_formula(row, col, f"={formulas.volume_today[cp.name]}", None, today)
    if ranges:
        ws.write_formula(row + 1, 2, f"=MIN({','.join(ranges)})", None, low)
        ws.write_formula(row + 1, 3, f"=MAX({','.join(ranges)})", None, high)
    chart.add_series({
        "name": f"today: {today:,.0f} requests/day",
        "categories": _ref(SHEET, row, 2, 3), "values": _ref(SHEET, row + 1, 2, 3),
        "line": {"color": TODAY_COLOUR, "width": 2.25}, "marker": {"type": "none"},
    })  # fmt: skip
    return row + 2


def _crossover_series(ws: Any, chart: Any, cp: ClassPlan, curves: Sequence[CurveRows], formulas: Formulas,
                      row: int, bold: Any) -> int:  # fmt: skip
    """Each hosted option's crossover (the Curve sheet's lookup) as a point on its own cost curve; an
    option that never crosses is #N/A there, which Excel leaves out."""
    if not curves:
        return row
    last = xl_col_to_name(2 + len(formulas.grid) - 1)
    ws.write_row(row, 0, ["crossover", "requests/day", "$/month"], bold)
    first = row + 1
    for c in curves:
        row += 1
        x, volumes = _cell(row, 1), f"'Curve'!$C${c.row + 1}:${last}${c.row + 1}"
        costs = f"'Curve'!$C${c.row + 2}:${last}${c.row + 2}"
        ws.write(row, 0, c.option_id)
        ws.write_formula(row, 1, f"=IF(ISNUMBER({c.crossover}),{c.crossover},NA())")
        ws.write_formula(row, 2, f"=IF(ISNUMBER({x}),INDEX({costs},MATCH({x},{volumes},0)),NA())")
    chart.add_series({
        "name": "crossovers (first volume where self-hosting is no dearer)",
        "categories": f"='{SHEET}'!$B${first + 1}:$B${row + 1}", "values": f"='{SHEET}'!$C${first + 1}:$C${row + 1}",
        "line": {"none": True},
        "marker": {"type": "circle", "size": 8, "border": {"color": TODAY_COLOUR}, "fill": {"none": True}},
    })  # fmt: skip
    return row + 1


def _totals_chart(book: Any, cp: ClassPlan, palette: Palette, results: Sequence[ResultRows]) -> Any:
    """Total $/month of every option at each growth scenario: the Results sheet's live total column."""
    chart = book.add_chart({"type": "column"})
    labels, scenarios = option_labels(cp), len(cp.scenarios)
    for r in results:
        label = labels[r.option_id]
        chart.add_series({
            "name": label,
            "categories": f"='Results'!$D${r.row + 1}:$D${r.row + scenarios}",
            "values": f"='Results'!$J${r.row + 1}:$J${r.row + scenarios}",
            "fill": {"color": palette[label]}, "border": {"none": True},
        })  # fmt: skip
    chart.set_title({"name": f"{cp.name}: total $/month per option at each growth scenario (live)"})
    chart.set_x_axis({"name": "growth scenario (x today's volume)"})
    chart.set_y_axis({"name": "$ per month (log)", "log_base": 10, "num_format": "$#,##0"})
    chart.set_legend({"position": "bottom"})
    chart.set_size({"width": CHART_WIDTH, "height": CHART_HEIGHT})
    return chart
