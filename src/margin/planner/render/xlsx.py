"""XLSX workbook whose results are live formulas over an assumptions sheet: change a price, a capacity, a
hidden
cost or the volume and the monthly costs, $/M tokens and the crossover move. Cached values are the
planner's own
numbers, so viewers that do not recalculate still show them.

Sheets: Assumptions (every input, with its source) / Hours (instances per hour per option and scenario) /
Results (cost lines, $/M tokens, comparison API, crossover) / Curve (cost at 20 volumes per decade,
0.01x-1000x) / Charts (native Excel charts over those formulas: xlsx_charts.py).
Storage and egress lines (zero unless configured) are carried as planner values, not formulas."""

from __future__ import annotations

import io
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
from xlsxwriter import Workbook
from xlsxwriter.utility import xl_col_to_name, xl_rowcol_to_cell

from margin.planner.costing import api_cost_per_request, instances_for, replicas_for_load
from margin.planner.crossover import schedule_grid
from margin.planner.evaluate import PreparedHosted
from margin.planner.plan import ClassPlan, Plan
from margin.planner.render.chart_specs import plan_palette
from margin.planner.render.featured import cost_of, featured_ids
from margin.planner.render.xlsx_charts import CurveRows, Formulas, ResultRows, add_charts

GRID = [10 ** ((k - 40) / 20) for k in range(121)]
HIDDEN = ("build_engineering_months", "run_fte", "on_call_monthly_usd", "maintenance_hours_per_month")
OPTION_COLUMNS = ("instance", "rpi", "capacity", "min", "stz", "in", "out", "cached")
FIRST_OPTION_COLUMN = 3


def _abs(sheet: str, row: int, col: int) -> str:
    return f"'{sheet}'!{xl_rowcol_to_cell(row, col, row_abs=True, col_abs=True)}"


@dataclass(frozen=True)
class _Layout:
    globals: dict[str, str]
    shape_row: dict[str, int]  # class -> Assumptions row holding its share and 24 hourly shares
    option_row: dict[tuple[str, str], int]  # (class, option id) -> Assumptions row of its inputs

    def class_share(self, cls: str) -> str:
        return _abs("Assumptions", self.shape_row[cls], 1)

    def hour_share(self, cls: str, hour: int) -> str:
        return _abs("Assumptions", self.shape_row[cls], 2 + hour)

    def shares_range(self, cls: str) -> str:
        row = self.shape_row[cls] + 1
        return f"'Assumptions'!$C${row}:$Z${row}"

    def option(self, cls: str, option_id: str) -> dict[str, str]:
        row = self.option_row[(cls, option_id)]
        return {k: _abs("Assumptions", row, FIRST_OPTION_COLUMN + i) for i, k in enumerate(OPTION_COLUMNS)}

    def volume(self, cls: str, scenario: int) -> str:
        g = self.globals
        return f"{g['requests_per_day']}*{self.class_share(cls)}*{g[f'growth{scenario}']}"

    @property
    def days(self) -> str:
        return f"{self.globals['hours_per_month']}/24"


def render_xlsx(plan: Plan) -> bytes:
    buffer = io.BytesIO()
    book = Workbook(buffer, {"in_memory": True})
    bold = book.add_format({"bold": True})
    ws = {n: book.add_worksheet(n) for n in ("Assumptions", "Hours", "Results", "Curve")}
    layout = _write_assumptions(plan, ws["Assumptions"], bold)
    _write_headers(ws, bold)
    rows = {"Hours": 1, "Results": 1, "Curve": 1}
    hpm = Decimal(repr(plan.catalog.assumptions.hours_per_month.value))
    curves: list[CurveRows] = []
    results: list[ResultRows] = []
    for cp in plan.classes:
        for option_id in featured_ids(cp):
            hosted = next((h for h in cp.hosted if h.option.id == option_id), None)
            crossover = None
            if hosted is not None and cp.compare_to is not None:
                crossover = _write_curve(ws["Curve"], rows["Curve"], cp, hosted, layout, hpm)
                curves.append(CurveRows(cp.name, option_id, rows["Curve"], crossover))
                rows["Curve"] += 3
            results.append(ResultRows(cp.name, option_id, rows["Results"]))
            for index in range(len(cp.scenarios)):
                if hosted is not None:
                    _write_hours(ws["Hours"], rows["Hours"], cp, hosted, index, layout)
                _write_result(ws["Results"], rows, cp, option_id, index, layout, crossover)
                rows["Results"] += 1
                rows["Hours"] += 1 if hosted is not None else 0
    add_charts(book, plan, plan_palette(plan), _chart_formulas(plan, layout), curves, results)
    book.close()
    return buffer.getvalue()


def _chart_formulas(plan: Plan, layout: _Layout) -> Formulas:
    api_per_request = {
        (cp.name, option_id): _per_request(layout.option(cp.name, option_id), layout.globals)
        for cp in plan.classes
        for option_id in featured_ids(cp)
        if option_id.startswith("api:")
    }
    volumes = {cp.name: layout.volume(cp.name, 0) for cp in plan.classes}
    return Formulas(volumes, api_per_request, layout.days, GRID)


def _write_headers(ws: dict[str, Any], bold: Any) -> None:
    ws["Hours"].write_row(
        0, 0, ["class | option | scenario", *[f"h{h:02d}" for h in range(24)], "instance-h/day"], bold
    )
    ws["Results"].write_row(
        0,
        0,
        [
            "class",
            "option",
            "kind",
            "growth",
            "requests/day",
            "instance-h/day",
            "GPU $/month",
            "hidden $/month",
            "storage+egress $/month",
            "total $/month",
            "tokens/month",
            "$/M tokens",
            "compare API $/month",
            "crossover req/day (20/decade grid)",
        ],
        bold,
    )
    ws["Curve"].write_row(0, 0, ["class | option", "row", *[f"{f:.3g}x" for f in GRID], "crossover"], bold)


def _globals(plan: Plan) -> list[tuple[str, float, str, str]]:
    c, p = plan.catalog, plan.profile
    a, h = c.assumptions, c.hidden_costs
    items = [
        ("hours_per_month", a.hours_per_month.value, a.hours_per_month.source, a.hours_per_month.note),
        (
            "target_utilization",
            a.target_utilization.value,
            a.target_utilization.source,
            a.target_utilization.note,
        ),
        (
            "engineer_monthly_usd",
            float(c.costs.engineer_monthly_usd.value),
            c.costs.engineer_monthly_usd.source,
            "",
        ),
        ("amortization_months", h.amortization_months.value, h.amortization_months.source, ""),
        ("engineer_hours_per_month", h.engineer_hours_per_month.value, h.engineer_hours_per_month.source, ""),
        ("requests_per_day", p.requests_per_day, "profile", "all classes, today"),
        ("input_tokens_mean", p.input_tokens.mean, "profile", ""),
        ("output_tokens_mean", p.output_tokens.mean, "profile", ""),
        ("prompt_cache_share", p.prompt_cache_share, "profile", "input billed at the cached price"),
    ]
    for kind in ("self_hosted", "managed"):
        for field in HIDDEN:
            figure = getattr(getattr(h, kind), field)
            items.append((f"{kind}.{field}", float(figure.value), figure.source, figure.note))
    items += [(f"growth{j}", g, "profile", "growth scenario multiplier") for j, g in enumerate(p.growth)]
    return items


def _write_assumptions(plan: Plan, ws: Any, bold: Any) -> _Layout:
    ws.write_row(0, 0, ["assumption", "value", "source", "note"], bold)
    refs: dict[str, str] = {}
    items = _globals(plan)
    for i, (name, value, source, note) in enumerate(items, start=1):
        ws.write_row(i, 0, [name, value, source, note])
        refs[name] = _abs("Assumptions", i, 1)
    row = len(items) + 2
    ws.write_row(row, 0, ["class", "share of requests", *[f"h{h:02d} share" for h in range(24)]], bold)
    shape_row: dict[str, int] = {}
    for cp in plan.classes:
        row += 1
        demand = cp.scenarios[0].demand
        ws.write_row(row, 0, [cp.name, demand.requests_per_day / plan.profile.requests_per_day, *demand.hourly_shares])
        shape_row[cp.name] = row
    row += 2
    ws.write_row(
        row,
        0,
        [
            "class",
            "option",
            "kind",
            "instance $/h",
            "replicas/instance",
            "capacity req/s",
            "min replicas",
            "scale to zero",
            "API $/M in",
            "API $/M out",
            "API $/M cached in",
            "source",
        ],
        bold,
    )
    option_row: dict[tuple[str, str], int] = {}
    for cp in plan.classes:
        for option_id in featured_ids(cp):
            row += 1
            ws.write_row(row, 0, _option_values(cp, option_id))
            option_row[(cp.name, option_id)] = row
    return _Layout(refs, shape_row, option_row)


def _option_values(cp: ClassPlan, option_id: str) -> list[Any]:
    hosted = next((h for h in cp.hosted if h.option.id == option_id), None)
    if hosted is not None:
        p = hosted.pricing
        return [
            cp.name,
            option_id,
            hosted.option.kind,
            float(p.instance_usd_hr),
            p.replicas_per_instance,
            hosted.capacity.requests_per_s,
            p.min_replicas,
            int(p.scale_to_zero),
            "",
            "",
            "",
            f"{hosted.option.offer.source}; {p.price_note}",
        ]
    api = cp.api_price(option_id)
    batch = cp.kind == "batch"
    price_in = (api.batch_input_usd_per_mtok if batch else None) or api.input_usd_per_mtok
    price_out = (api.batch_output_usd_per_mtok if batch else None) or api.output_usd_per_mtok
    cached = api.cached_input_usd_per_mtok if api.cached_input_usd_per_mtok is not None else price_in
    return [
        cp.name,
        option_id,
        "api",
        "",
        "",
        "",
        "",
        "",
        float(price_in),
        float(price_out),
        float(cached),
        f"{api.source} ({api.date})",
    ]


def _replicas(load: str, o: dict[str, str], g: dict[str, str]) -> str:
    need = f"ROUNDUP({load}/({o['capacity']}*{g['target_utilization']})-1E-9,0)"
    return f"IF({load}<=0,IF({o['stz']}=1,0,{o['min']}),MAX({o['min']},{need}))"


def _write_hours(ws: Any, row: int, cp: ClassPlan, hosted: PreparedHosted, index: int, layout: _Layout) -> None:
    scenario = cp.scenarios[index]
    ws.write(row, 0, f"{cp.name} | {hosted.option.id} | {scenario.growth:g}x")
    o, loads = layout.option(cp.name, hosted.option.id), scenario.demand.hourly_requests_per_s()
    for h in range(24):
        load = f"({layout.volume(cp.name, index)}*{layout.hour_share(cp.name, h)}/3600)"
        value = instances_for(
            replicas_for_load(loads[h], hosted.capacity.requests_per_s, hosted.pricing), hosted.pricing
        )
        ws.write_formula(row, 1 + h, f"=ROUNDUP({_replicas(load, o, layout.globals)}/{o['rpi']},0)", None, value)
    ws.write_formula(
        row,
        25,
        f"=SUM(B{row + 1}:Y{row + 1})",
        None,
        cost_of(scenario, hosted.option.id).instance_hours_per_day,
    )


def _hidden(kind: str, g: dict[str, str]) -> str:
    eng, k = g["engineer_monthly_usd"], f"{kind}."
    return (
        f"{g[k + 'build_engineering_months']}*{eng}/{g['amortization_months']}+{g[k + 'run_fte']}*{eng}"
        f"+{g[k + 'on_call_monthly_usd']}+{g[k + 'maintenance_hours_per_month']}*{eng}/"
        f"{g['engineer_hours_per_month']}"
    )


def _per_request(o: dict[str, str], g: dict[str, str]) -> str:
    cs = g["prompt_cache_share"]
    return (
        f"({g['input_tokens_mean']}*((1-{cs})*{o['in']}+{cs}*{o['cached']})"
        f"+{g['output_tokens_mean']}*{o['out']})/1000000"
    )


def _write_result(
    ws: Any,
    rows: dict[str, int],
    cp: ClassPlan,
    option_id: str,
    index: int,
    layout: _Layout,
    crossover: str | None,
) -> None:
    g, scenario, row = layout.globals, cp.scenarios[index], rows["Results"]
    cost, o, r = cost_of(scenario, option_id), layout.option(cp.name, option_id), row + 1
    ws.write_row(row, 0, [cp.name, option_id, cost.kind, scenario.growth])
    ws.write_formula(row, 4, f"={layout.volume(cp.name, index)}", None, scenario.demand.requests_per_day)
    if cost.kind == "api":
        ws.write_formula(row, 9, f"=E{r}*{_per_request(o, g)}*{layout.days}", None, float(cost.total))
    else:
        lines = {line.name: line.amount for line in cost.lines}
        other = lines.get("weights storage", Decimal(0)) + lines.get("egress", Decimal(0))
        ws.write_formula(row, 5, f"='Hours'!Z{rows['Hours'] + 1}", None, cost.instance_hours_per_day)
        ws.write_formula(row, 6, f"=F{r}*{o['instance']}*{layout.days}", None, float(lines.get("GPU instances", 0)))
        ws.write_formula(
            row,
            7,
            f"={_hidden(cost.kind, g)}",
            None,
            float(cost.total - other - lines.get("GPU instances", Decimal(0))),
        )
        ws.write(row, 8, float(other))
        ws.write_formula(row, 9, f"=G{r}+H{r}+I{r}", None, float(cost.total))
    ws.write_formula(
        row,
        10,
        f"=E{r}*({g['input_tokens_mean']}+{g['output_tokens_mean']})*{layout.days}",
        None,
        float(cost.tokens_per_month),
    )
    per_m = float(cost.usd_per_mtok) if cost.usd_per_mtok is not None else 0.0
    ws.write_formula(row, 11, f"=IF(K{r}>0,J{r}/K{r}*1000000,0)", None, per_m)
    if cp.compare_to is not None:
        compare = layout.option(cp.name, f"api:{cp.compare_to}")
        value = float(cost_of(scenario, f"api:{cp.compare_to}").total)
        ws.write_formula(row, 12, f"=E{r}*{_per_request(compare, g)}*{layout.days}", None, value)
    if crossover is not None:
        ws.write_formula(row, 13, f"={crossover}", None, "")


def _write_curve(
    ws: Any, row: int, cp: ClassPlan, hosted: PreparedHosted, layout: _Layout, hours_per_month: Decimal
) -> str:
    """Three rows: volumes, self-hosted cost, API cost; returns the crossover cell's reference."""
    g, o, option_id = layout.globals, layout.option(cp.name, hosted.option.id), hosted.option.id
    compare = layout.option(cp.name, f"api:{cp.compare_to}")
    today = cp.scenarios[0].demand
    volumes = np.array([today.requests_per_day * f for f in GRID])
    hours, _ = schedule_grid(volumes, today, hosted.capacity, hosted.pricing)
    fixed = sum((line.amount for line in hosted.pricing.fixed_lines), Decimal(0))
    api = cp.api_price(f"api:{cp.compare_to}")
    per_request = api_cost_per_request(api, today)
    days = hours_per_month / 24
    shares = layout.shares_range(cp.name)
    for k, factor in enumerate(GRID):
        col = 2 + k
        v = f"{xl_col_to_name(col)}{row + 1}"
        ws.write_formula(row, col, f"={layout.volume(cp.name, 0)}*{factor!r}", None, float(volumes[k]))
        x = f"ROUNDUP({v}*{shares}/3600/({o['capacity']}*{g['target_utilization']})-1E-9,0)"
        rep = f"(({shares}>0)*({x}+({o['min']}-{x})*({x}<{o['min']}))+({shares}<=0)*(1-{o['stz']})*{o['min']})"
        self_cost = (
            f"={_hidden(hosted.option.kind, g)}+SUMPRODUCT(ROUNDUP({rep}/{o['rpi']},0))*{o['instance']}*{layout.days}"
        )
        value = fixed + hosted.pricing.instance_usd_hr * int(hours[k]) * days
        ws.write_formula(row + 1, col, self_cost, None, float(value))
        api_value = per_request * Decimal(repr(float(volumes[k]))) * days
        ws.write_formula(row + 2, col, f"={v}*{_per_request(compare, g)}*{layout.days}", None, float(api_value))
    ws.write_row(row, 0, [f"{cp.name} | {option_id}", "requests/day"])
    ws.write_row(row + 1, 0, ["", "self-hosted $/month"])
    ws.write_row(row + 2, 0, ["", f"API {cp.compare_to} $/month"])
    last = xl_col_to_name(2 + len(GRID) - 1)
    r1, r2, r3 = row + 1, row + 2, row + 3
    lookup = (
        f"=IFERROR(INDEX(C{r1}:{last}{r1},MATCH(1,INDEX((C{r2}:{last}{r2}<=C{r3}:{last}{r3})*1,0),0)),"
        f'"never (0.01x-1000x)")'
    )
    ws.write_formula(row, 2 + len(GRID), lookup, None, "")
    return _abs("Curve", row, 2 + len(GRID))
