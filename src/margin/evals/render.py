"""Run summaries and comparisons as text: an aligned table (terminal), markdown (pull requests), JSON
(machines) and JUnit XML (CI systems show each gate as a test case)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, Literal
from xml.etree import ElementTree

from margin.evals.compare import Comparison
from margin.evals.gates import GateResult, GateVerdict
from margin.evals.run_params import describe_params
from margin.evals.stats import Interval
from margin.evals.summary import CostFigure, QualityFigure, RunSummary

Format = Literal["table", "markdown", "json", "junit"]
FORMATS: tuple[Format, ...] = ("table", "markdown", "json", "junit")
SummaryFormat = Literal["table", "markdown", "json"]
LISTED_ITEMS = 10


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"


def _usd(value: Decimal | None) -> str:
    return "n/a" if value is None else f"${value:.6f}"


def _interval(interval: Interval | None, signed: bool = False) -> str:
    if interval is None:
        return ""
    fmt = "+.3f" if signed else ".3f"
    return f" [{interval.low:{fmt}}, {interval.high:{fmt}}]"


def _quality(figure: QualityFigure) -> str:
    return f"{_num(figure.mean)}{_interval(figure.interval)}"


def _cost_note(cost: CostFigure) -> str:
    return "" if cost.complete else f" (cost reported for {cost.priced} calls only)"


def summary_rows(s: RunSummary) -> list[list[str]]:
    level = s.quality.interval.level if s.quality.interval else 0.95
    rows = [
        ["items", str(s.requests)],
        ["settings", describe_params(s.run_params)],
        [f"quality (mean, {level:.0%} CI)", _quality(s.quality)],
        ["pass rate", _num(s.quality.pass_rate)],
        ["error rate", _num(s.error_rate)],
        ["latency p50 / p95", f"{_ms(s.latency_p50_ms)} / {_ms(s.latency_p95_ms)}"],
        ["TTFT p50 / p95", f"{_ms(s.ttft_p50_ms)} / {_ms(s.ttft_p95_ms)}"],
        ["cost per request", _usd(s.cost.per_request_usd) + _cost_note(s.cost)],
        ["cost per successful request", _usd(s.cost.per_success_usd)],
        ["cost total (priced calls)", _usd(s.cost.total_usd) if s.cost.priced else "n/a"],
        ["tokens in / out", f"{s.input_tokens} / {s.output_tokens}"],
        ["ungraded (no score: failed)", str(s.undecided)],
    ]
    if s.judge:
        rows.append(["judge orders", ", ".join(f"{k} {v}" for k, v in sorted(s.judge.items()))])
    rows.extend([f"  tag {tag}", f"{_quality(q)} (n={q.items})"] for tag, q in s.by_tag.items())
    return rows


def table(rows: Sequence[Sequence[str]], header: Sequence[str] | None = None) -> str:
    everything = [list(header)] if header else []
    everything += [list(r) for r in rows]
    widths = [max(len(r[i]) for r in everything if i < len(r)) for i in range(max(map(len, everything)))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in everything]
    if header:
        lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *(line(r) for r in rows)])


def render_summary(summary: RunSummary, fmt: SummaryFormat = "table") -> str:
    if fmt == "json":
        return json.dumps(summary_json(summary), indent=2)
    title = f"{summary.set_name} on {summary.model}"
    if fmt == "markdown":
        return f"### {title}\n\n" + markdown_table(summary_rows(summary), ["figure", "value"])
    return f"{title}\n" + table(summary_rows(summary))


def comparison_rows(c: Comparison) -> list[list[str]]:
    b, k = c.baseline, c.candidate
    rows = [
        ["settings", describe_params(b.run_params), describe_params(k.run_params), ""],
        ["quality (mean, CI)", _quality(b.quality), _quality(k.quality),
         f"{c.mean_diff:+.3f}{_interval(c.interval, signed=True)}" if c.mean_diff is not None else "n/a"],
        ["pass rate", _num(b.quality.pass_rate), _num(k.quality.pass_rate), ""],
        ["paired items / wins / losses / ties", str(len(c.diffs)), "",
         f"{len(c.wins)} / {len(c.losses)} / {c.ties}"],
        ["error rate", _num(b.error_rate), _num(k.error_rate), ""],
        ["latency p95", _ms(b.latency_p95_ms), _ms(k.latency_p95_ms), ""],
        ["TTFT p95", _ms(b.ttft_p95_ms), _ms(k.ttft_p95_ms), ""],
        ["cost per successful request", _usd(b.cost.per_success_usd), _usd(k.cost.per_success_usd), ""],
        ["tokens in / out", f"{b.input_tokens} / {b.output_tokens}", f"{k.input_tokens} / {k.output_tokens}", ""],
    ]  # fmt: skip
    if c.mcnemar is not None:
        m = c.mcnemar
        rows.append(["McNemar (only base / only cand.)", str(m.only_baseline), str(m.only_candidate),
                     f"p = {m.p_value:.4g}"])  # fmt: skip
    if b.judge or k.judge:
        rows.append(["judge disagreed / unparseable", _judge(b), _judge(k), ""])
    return rows


def _judge(s: RunSummary) -> str:
    return f"{s.judge.get('disagreed', 0)} / {s.judge.get('unparseable', 0)}"


def gate_rows(verdict: GateVerdict) -> list[list[str]]:
    return [[g.name, "pass" if g.passed else "FAIL", _measured(g), f"{g.rule} {_bound(g)}", g.detail]
            for g in verdict.gates]  # fmt: skip


def _measured(gate: GateResult) -> str:
    if gate.measured is None:
        return "not measured"
    return format(gate.measured, "f") if isinstance(gate.measured, Decimal) else f"{gate.measured:.4g}"


def _bound(gate: GateResult) -> str:
    return format(gate.bound, "f") if isinstance(gate.bound, Decimal) else f"{gate.bound:g}"


def render_comparison(c: Comparison, verdict: GateVerdict, fmt: Format, names: tuple[str, str]) -> str:
    if fmt == "json":
        return json.dumps(comparison_json(c, verdict, names), indent=2)
    if fmt == "junit":
        return junit(c, verdict, names)
    header = ["", f"baseline ({names[0]})", f"candidate ({names[1]})", "difference"]
    gate_header = ["gate", "result", "measured", "bound", "detail"]
    title = f"{c.baseline.set_name}: {c.candidate.model} against {c.baseline.model}"
    verdict_line = f"verdict: {'PASS' if verdict.passed else 'FAIL'}"
    losses = ", ".join(c.losses[:LISTED_ITEMS]) + (", ..." if len(c.losses) > LISTED_ITEMS else "")
    if fmt == "markdown":
        parts = [f"### {title}", markdown_table(comparison_rows(c), header), f"**{verdict_line}**",
                 markdown_table(gate_rows(verdict), gate_header)]  # fmt: skip
        if losses:
            parts.append(f"Items the candidate lost: {losses}")
        return "\n\n".join(parts)
    parts = [title, table(comparison_rows(c), header), verdict_line, table(gate_rows(verdict), gate_header)]
    if losses:
        parts.append(f"items the candidate lost: {losses}")
    return "\n\n".join(parts)


def junit(c: Comparison, verdict: GateVerdict, names: tuple[str, str]) -> str:
    suites = ElementTree.Element("testsuites")
    suite = ElementTree.SubElement(
        suites,
        "testsuite",
        name=f"margin eval gates: {c.baseline.set_name}",
        tests=str(len(verdict.gates)),
        failures=str(len(verdict.failed)),
        errors="0",
    )
    for gate in verdict.gates:
        case = ElementTree.SubElement(suite, "testcase", classname=f"margin.eval.{names[1]}", name=gate.name)
        if not gate.passed:
            failure = ElementTree.SubElement(case, "failure", message=gate.detail, type="GateFailed")
            failure.text = f"{gate.name}: measured {_measured(gate)}, must be {gate.rule} {_bound(gate)}"
    out = ElementTree.SubElement(suite, "system-out")
    out.text = table(comparison_rows(c), ["", names[0], names[1], "difference"])
    return ElementTree.tostring(suites, encoding="unicode", xml_declaration=True)


def _json_value(value: object) -> Any:
    return format(value, "f") if isinstance(value, Decimal) else value


def summary_json(s: RunSummary) -> dict[str, Any]:
    def quality(q: QualityFigure) -> dict[str, Any]:
        interval = [q.interval.low, q.interval.high] if q.interval else None
        return {"items": q.items, "mean": q.mean, "interval": interval, "pass_rate": q.pass_rate}

    return {
        "set": s.set_name,
        "model": s.model,
        "run_params": s.run_params,
        "requests": s.requests,
        "errors": s.errors,
        "error_rate": s.error_rate,
        "quality": quality(s.quality),
        "by_tag": {tag: quality(q) for tag, q in s.by_tag.items()},
        "latency_ms": {"p50": s.latency_p50_ms, "p95": s.latency_p95_ms},
        "ttft_ms": {"p50": s.ttft_p50_ms, "p95": s.ttft_p95_ms},
        "cost_usd": {
            "total": _json_value(s.cost.total_usd),
            "priced_calls": s.cost.priced,
            "complete": s.cost.complete,
            "per_request": _json_value(s.cost.per_request_usd),
            "per_success": _json_value(s.cost.per_success_usd),
        },
        "tokens": {"input": s.input_tokens, "output": s.output_tokens},
        "undecided": s.undecided,
        "judge": s.judge,
    }


def comparison_json(c: Comparison, verdict: GateVerdict, names: tuple[str, str]) -> dict[str, Any]:
    return {
        "baseline": {"results": names[0], **summary_json(c.baseline)},
        "candidate": {"results": names[1], **summary_json(c.candidate)},
        "paired": {
            "items": len(c.diffs),
            "mean_difference": c.mean_diff,
            "interval": [c.interval.low, c.interval.high] if c.interval else None,
            "level": c.interval.level if c.interval else None,
            "bootstrap_seed": c.seed,
            "wins": list(c.wins),
            "losses": list(c.losses),
            "ties": c.ties,
            "only_baseline": list(c.only_baseline),
            "only_candidate": list(c.only_candidate),
            "mcnemar": None
            if c.mcnemar is None
            else {
                "only_baseline": c.mcnemar.only_baseline,
                "only_candidate": c.mcnemar.only_candidate,
                "p_value": c.mcnemar.p_value,
            },
        },
        "verdict": {
            "passed": verdict.passed,
            "gates": [
                {
                    "name": g.name,
                    "passed": g.passed,
                    "measured": _json_value(g.measured),
                    "rule": g.rule,
                    "bound": _json_value(g.bound),
                    "detail": g.detail,
                }
                for g in verdict.gates
            ],
        },
    }
