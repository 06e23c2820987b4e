"""margin whatif on recorded traffic built from the RouteLLM data: the report's figures against an
independent calculation, to the cent (in fact exactly), and bad input reported by line."""

from __future__ import annotations

import json
import re
import zipfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from tests.unit.whatif.routellm_traffic import DATA, PRICES, STRONG, WEAK, load_rows, traffic

from margin.cli import main
from margin.whatif.config import parse_whatif_config
from margin.whatif.html import render_html
from margin.whatif.report import report_json, report_table, write_report
from margin.whatif.run import run_whatif
from margin.whatif.traffic import parse_lines
from margin.whatif.xlsx import render_xlsx

pytestmark = pytest.mark.skipif(not DATA.exists(), reason="needs ../shared/data/routellm")
MILLION = Decimal(1_000_000)
TTL = 3600.0


def config(**routing: Any) -> Any:
    return parse_whatif_config(
        {
            "tiers": {"strong": STRONG, "weak": WEAK},
            "cache": {"exact": {"ttl_s": TTL}},
            "routing": {"quality_target": 0.95, "resamples": 500, **routing},
            "prices": PRICES,
        }
    )


def strong_cost(r: dict[str, Any]) -> Decimal:
    usage = r["response"]["usage"]
    return (Decimal(usage["prompt_tokens"]) * 10 + Decimal(usage["completion_tokens"]) * 30) / MILLION


def weak_cost(r: dict[str, Any]) -> Decimal:
    usage = r["tiers"][WEAK]["usage"]
    return (Decimal(usage["prompt_tokens"]) + Decimal(usage["completion_tokens"])) * Decimal("0.60") / MILLION


def exact_hits(records: list[dict[str, Any]]) -> list[bool]:
    """In time order (ties by line), a prompt is a hit while the entry its last miss stored lives."""
    stored: dict[str, float] = {}
    hits = [False] * len(records)
    for i in sorted(range(len(records)), key=lambda i: (records[i]["timestamp"], i)):
        r = records[i]
        if stored.get(r["id"], float("-inf")) > r["timestamp"]:
            hits[i] = True
        else:
            stored[r["id"]] = r["timestamp"] + TTL
    return hits


@pytest.fixture(scope="module")
def replay(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict[str, Any]], dict[str, Any], list[Any]]:
    records = traffic(load_rows(every=8), total=2000, repeat_share=0.3)
    lines = [(n, json.dumps(r)) for n, r in enumerate(records, start=1)]
    report = run_whatif(parse_lines(lines), config())
    out = tmp_path_factory.mktemp("whatif")
    write_report(report, out)
    (out / "report.xlsx").write_bytes(render_xlsx(report))
    page = render_html(report)
    assert 'id="whatif-curve"' in page and "operating-point" in page and "router (after cache)" in page
    decisions = [json.loads(x) for x in (out / "decisions.jsonl").read_text().splitlines()]
    return records, report_json(report) | {"_out": str(out)}, decisions


def test_cache_and_current_cost_match_an_independent_replay(replay: Any) -> None:
    records, report, decisions = replay
    hits = exact_hits(records)
    current = sum((strong_cost(r) for r in records), Decimal(0))
    saved = sum((strong_cost(r) for r, hit in zip(records, hits, strict=True) if hit), Decimal(0))
    assert 200 < sum(hits) < 600  # repeats within the TTL hit, older ones do not
    assert Decimal(report["current_cost_usd"]) == current
    assert report["cache"]["exact_hits"] == sum(hits) and report["cache"]["semantic_hits"] == 0
    assert Decimal(report["cache"]["saved_exact_usd"]) == saved
    by_line = {d["line"]: d for d in decisions}
    assert [by_line[n]["cache"] == "exact" for n in range(1, len(records) + 1)] == hits


def test_router_projection_matches_an_independent_calculation(replay: Any) -> None:
    records, report, decisions = replay
    routing = report["routing"]
    point = routing["operating_point"]
    threshold = point["threshold"]
    misses = [
        (r, d) for r, d in zip(records, sorted(decisions, key=lambda d: d["line"]), strict=True) if d["cache"] == "miss"
    ]
    assert routing["requests"] == len(misses)
    weak = [d["router_score"] < threshold for _, d in misses]
    assert [d["tier"] == "weak" for _, d in misses] == weak
    cost = sum((weak_cost(r) if w else strong_cost(r) for (r, _), w in zip(misses, weak, strict=True)), Decimal(0))
    assert Decimal(point["cost_usd"]) == cost
    before = sum((strong_cost(r) for r, _ in misses), Decimal(0))
    assert Decimal(routing["saved_usd"]) == before - cost
    quality = sum(r["tiers"][WEAK]["quality"] if w else r["quality"] for (r, _), w in zip(misses, weak, strict=True))
    strong = sum(r["quality"] for r, _ in misses)
    assert point["quality_ratio"] == pytest.approx(quality / strong, abs=1e-6)
    assert point["weak_share"] == pytest.approx(sum(weak) / len(misses), abs=1e-6)
    # The operating point meets the target at its lower bound, and it does route to the weak tier.
    assert point["quality_interval"][0] >= 0.95 and sum(weak) > 0.1 * len(misses)
    score_of = {r["id"]: d["router_score"] for r, d in misses}  # each prompt's first request is a miss
    alone = sum((strong_cost(r) - weak_cost(r) for r in records if score_of[r["id"]] < threshold), Decimal(0))
    assert Decimal(routing["alone_saved_usd"]) == alone and alone > before - cost
    hits_cost = Decimal(report["cache"]["saved_exact_usd"])
    total = Decimal(report["current_cost_usd"]) - hits_cost - (before - cost)
    assert Decimal(report["all_levers_cost_usd"]) == total
    assert round(total, 2) == round(Decimal(report["all_levers_cost_usd"]), 2)


def test_bad_input_is_reported_by_line_and_the_rest_still_counts() -> None:
    rows = load_rows(every=400)
    good = traffic(rows, total=len(rows), repeat_share=0.0)
    no_usage = dict(good[1], response={"model": STRONG, "choices": []})
    unknown = dict(good[2], response=dict(good[2]["response"], model="acme-unknown-1"))
    lines = [json.dumps(good[0]), "not json", json.dumps({"request": {}}), json.dumps(no_usage), json.dumps(unknown)]
    lines += [json.dumps(r) for r in good[3:]]
    report = report_json(run_whatif(parse_lines(enumerate(lines, start=1)), config(min_labelled=1000)))
    issues = "\n".join(report["issues"])
    assert "line 2: not JSON" in issues and "line 3: `request` must be" in issues
    assert "line 4: no usage in the response; tokens estimated" in issues
    assert "'acme-unknown-1' is not in the price catalog: 1 requests" in issues
    assert report["records"] == len(lines) - 2 and report["estimated_usage"] == 1
    assert report["unknown_models"] == {"acme-unknown-1": 1}
    known = [r for i, r in enumerate(good) if i != 2]
    estimated = Decimal(report["current_cost_usd"]) - sum(
        (strong_cost(r) for r in known if r is not no_usage and r is not good[1]), Decimal(0)
    )
    assert estimated > 0  # the estimated request is priced, never zero
    assert "routing lever not projected" in report["routing"]["status"]


def test_the_cli_writes_the_report(tmp_path: Path) -> None:
    rows = load_rows(every=400)
    path = tmp_path / "traffic.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in traffic(rows, total=60, repeat_share=0.3)) + "\n")
    candidate = tmp_path / "candidate.yaml"
    candidate.write_text(
        json.dumps({"tiers": {"strong": STRONG, "weak": WEAK}, "prices": PRICES, "routing": {"min_labelled": 1000}})
    )
    result = CliRunner().invoke(
        main, ["whatif", "run", str(path), "--config", str(candidate), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 0, result.output
    assert "current (recorded)" in result.output and "all levers" in result.output
    assert json.loads((tmp_path / "o" / "report.json").read_text())["records"] == 60
    assert "<h1>margin whatif</h1>" in (tmp_path / "o" / "report.html").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text("tiers: {strong: a, weak: a}\n")
    result = CliRunner().invoke(main, ["whatif", "run", str(path), "--config", str(bad), "--out", str(tmp_path / "p")])
    assert result.exit_code != 0 and "must be different deployments" in result.output


def chat(text: str, ts: float, tenant: str = "a") -> str:
    return json.dumps(
        {
            "timestamp": ts,
            "tenant": tenant,
            "request": {"model": STRONG, "messages": [{"role": "user", "content": text}], "temperature": 0},
            "response": {"model": STRONG, "usage": {"prompt_tokens": 1000, "completion_tokens": 100}},
        }
    )


def test_semantic_replay_goes_through_the_engine_with_tenants_and_ttl() -> None:
    lines = [
        chat("How do I reset my router password?", 0),
        chat("How can I reset my router password?", 10),  # a paraphrase: semantic hit
        chat("How do I reset my router password?", 20),  # exact hit
        chat("How do I reset my router password?", 30, tenant="b"),  # another tenant: miss
        chat("What is the boiling point of ethanol at sea level?", 40),  # another question
        chat("How can I reset my router password?", 5000),  # past the TTL: miss
    ]
    candidate = parse_whatif_config(
        {
            "tiers": {"strong": STRONG},
            "cache": {"exact": {"ttl_s": 3600}, "semantic": {"enabled": True, "threshold": 0.5}},
            "prices": PRICES,
        }
    )
    report = run_whatif(parse_lines(enumerate(lines, start=1)), candidate)
    assert report.cache.outcomes == ["miss", "semantic", "exact", "miss", "miss", "miss"]
    each = (Decimal(1000) * 10 + Decimal(100) * 30) / MILLION
    assert report.cache_saved == 2 * each and report.current == 6 * each
    assert report.routing is None and "routing lever off" in report.routing_note


def test_the_planner_runs_on_the_volume_left_after_the_levers(tmp_path: Path) -> None:
    profile = {
        "name": "chat",
        "requests_per_day": 1,  # replaced by the measured volume
        "input_tokens": {"mean": 500, "p95": 1000},
        "output_tokens": {"mean": 250, "p95": 500},
        "sla": {"ttft_ms": 3000, "p95_ms": 30000},  # the A10G meets it at 2,000 input tokens
        "ops_capacity": "dedicated",
        "candidates": {
            "apis": ["together/qwen2.5-7b-instruct-turbo"],
            "models": ["llama-3.1-8b"],
            "gpus": ["a10g"],
            "providers": ["aws"],
            "precisions": ["fp16"],
            "pricing": ["on_demand"],
            "managed": [],
        },
    }
    path = tmp_path / "profile.yaml"
    path.write_text(json.dumps(profile))
    lines = [chat(f"question number {i} about routers", i * 0.5) for i in range(200)]  # 100 s of traffic
    candidate = parse_whatif_config({"tiers": {"strong": STRONG}, "prices": PRICES, "planner_profile": str(path)})
    report = run_whatif(parse_lines(enumerate(lines, start=1)), candidate)
    assert [row.requests_per_day for row in report.volume] == [4800.0, 24000.0, 48000.0]  # a minimum of one hour
    assert [c.multiplier for c in report.plan] == [1.0, 5.0, 10.0] and all(c.recommended for c in report.plan)
    table = report_json(report)["self_hosting"]
    assert len(table) == 3 and all(row["monthly_usd"] for row in table)
    # The fleet simulator on the same misses, minute by minute: 120 requests in minute 0, 80 in minute 1.
    fleet = report.fleet
    assert [f.multiplier for f in fleet] == [1.0, 5.0, 10.0] and all(f.minutes == 2 for f in fleet)
    assert all(f.monthly_usd == f.total_usd * 43_200 / 2 and f.total_usd > 0 for f in fleet)
    apis = [f.api_only_usd for f in fleet]
    assert apis[0] is not None and apis == [apis[0] * 1, apis[0] * 5, apis[0] * 10]  # 200, 1,000, 2,000 requests
    assert len(report_json(report)["fleet"]) == 3 and "fleet x10:" in report_table(report)
    assert "<h2>Self-hosting</h2>" in render_html(report) and "fleet x5:" in render_html(report)


def test_an_openai_batch_pair_imports_as_traffic(tmp_path: Path) -> None:
    def request(i: int) -> dict[str, Any]:
        body = {"model": STRONG, "messages": [{"role": "user", "content": f"q{i % 2}"}], "temperature": 0}
        return {"custom_id": f"c{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}

    def answer(i: int) -> dict[str, Any]:
        usage = {"prompt_tokens": 100, "completion_tokens": 10}
        body = {"model": STRONG, "created": 1_700_000_000 + i, "choices": [], "usage": usage}
        return {"custom_id": f"c{i}", "response": {"status_code": 200, "body": body}}

    inputs = [json.dumps(request(i)) for i in range(4)] + ["{", json.dumps(request(9))]
    outputs = [json.dumps(answer(i)) for i in range(4)]
    (tmp_path / "in.jsonl").write_text("\n".join(inputs) + "\n")
    (tmp_path / "out.jsonl").write_text("\n".join(outputs) + "\n")
    result = CliRunner().invoke(
        main, ["whatif", "import-batch", str(tmp_path / "in.jsonl"), str(tmp_path / "out.jsonl")]
    )
    assert result.exit_code == 0
    assert "in.jsonl line 5: not JSON" in result.stderr and "in.jsonl line 6: c9 has no answer" in result.stderr
    lines = [(n, x) for n, x in enumerate(result.stdout.splitlines(), start=1)]
    report = run_whatif(parse_lines(lines), parse_whatif_config({"tiers": {"strong": STRONG}, "prices": PRICES}))
    assert len(report.records) == 4 and report.cache.outcomes == ["miss", "miss", "exact", "exact"]
    assert report.current == 4 * (Decimal(100) * 10 + Decimal(10) * 30) / MILLION


def test_sampled_requests_are_cached_only_when_the_candidate_says_so() -> None:
    sampled = json.loads(chat("Write a poem about routers", 0))
    del sampled["request"]["temperature"]
    lines = [(1, json.dumps(sampled)), (2, json.dumps(sampled | {"timestamp": 10}))]
    as_margin = parse_whatif_config({"tiers": {"strong": STRONG}, "prices": PRICES})
    assert run_whatif(parse_lines(lines), as_margin).cache.outcomes == ["ineligible", "ineligible"]
    every_call = as_margin.model_copy(
        update={
            "cache": parse_whatif_config(
                {"tiers": {"strong": STRONG}, "cache": {"exact": {"deterministic_only": False}}}
            ).cache
        }
    )
    assert run_whatif(parse_lines(lines), every_call).cache.outcomes == ["miss", "exact"]


def test_the_workbook_carries_live_formulas_and_the_reports_figures(replay: Any) -> None:
    _, report, _ = replay
    out = Path(report["_out"])
    with zipfile.ZipFile(out / "report.xlsx") as book:
        names = book.namelist()
        sheets = [book.read(n).decode() for n in sorted(names) if n.startswith("xl/worksheets/sheet")]
        charts = [book.read(n).decode() for n in sorted(names) if n.startswith("xl/charts/chart")]
    _, requests, levers, curve = sheets
    assert "Assumptions!$B$2" in requests and "Assumptions!$B$4" in requests  # costs follow the prices
    assert 'SUMIFS(Requests!$G$2:$G$2001,Requests!$B$2:$B$2001,"exact")' in levers
    cached = [float(v) for v in re.findall(r"</f><v>([-0-9.eE]+)</v>", levers)]
    assert cached[0] == pytest.approx(float(report["current_cost_usd"]), abs=0.005)
    assert cached[1] == pytest.approx(float(report["cache"]["saved_exact_usd"]), abs=0.005)
    assert cached[2] == pytest.approx(float(report["routing"]["saved_usd"]), abs=0.005)
    assert cached[3] == pytest.approx(float(report["all_levers_cost_usd"]), abs=0.005)
    # Native charts: the saving per lever over the Levers sheet, the threshold curve over the Curve sheet.
    bars, line = charts
    assert "<c:barChart>" in bars and "Levers!$B$10:$B$12" in bars and "Levers!$A$10:$A$12" in bars
    assert "<c:scatterChart>" in line and "Curve!$E$2:$E$12" in line and "Curve!$F$2:$F$12" in line
    saved = [float(v) for v in re.findall(r"</f><v>([-0-9.eE]+)</v>", levers)][-3:]
    assert saved[0] == pytest.approx(float(report["cache"]["saved_exact_usd"]), abs=1e-6)
    assert saved[1] == pytest.approx(float(report["routing"]["saved_usd"]), abs=1e-6)
    rows = re.findall(r'<row r="(\d+)".*?</row>', curve)
    assert len(rows) == 12  # the header and the curve's 11 points
    column_c = [float(v) for v in re.findall(r'<c r="C\d+"(?: s="\d+")?><v>([-0-9.eE]+)</v>', curve)]
    assert column_c == pytest.approx([float(p["cost_usd"]) for p in report["routing"]["curve"]], abs=1e-9)
