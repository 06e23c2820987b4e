"""The worked example of docs/tuning.md: distil exact answers (the stand-in for the premium teacher)
of the support-ticket task into a LoRA adapter on SmolLM2-135M, on this CPU.

    flock /tmp/margin-bench.lock .venv/bin/python bench/distill.py --phase train   [--steps 60 ...]
    flock /tmp/margin-bench.lock .venv/bin/python bench/distill.py --phase resume  (same settings)

`train`: builds the dataset (seeded; the test split holds template families training never saw),
scores the base model on the test split, trains a job uninterrupted in its worker process (wall and
CPU time, the worker's peak RSS), scores the student (base + adapter through llama-cpp-python),
measures tokens/s of base vs base + adapter in the same run (rounds alternate; llama.cpp with the
local tier's default threads, half the cores: with both cores, decode collapses on a loaded machine), and prices 1,000
test requests at the teacher's catalog price (gpt-4o by default) vs the student's (the local tier's
declared price, and its CPU time at --usd-per-cpu-hour, an assumption you should replace).
`resume`: the same job again, killed with SIGKILL once a checkpoint past half-way is complete, then
resumed with the worker's --resume; its accuracy is compared with the uninterrupted one's.

Targets (issue 26): student >= 90% of the teacher's accuracy where the base is below 50%; serving
with the adapter >= 90% of base tokens/s; resumed accuracy within 1 point of uninterrupted.
Results are kept in WORK/results.json between the phases."""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from margin.metering.catalog import load_catalog
from margin.metering.pricing import price_usage
from margin.tuning import jobs
from margin.tuning.base_model import default_model_path
from margin.tuning.examples import tickets
from margin.tuning.launch import create
from margin.tuning.settings import TrainSettings
from margin.types import Usage


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phase", choices=["train", "resume"], required=True)
    parser.add_argument("--work", type=Path, default=Path("/tmp/margin-distill"))
    parser.add_argument("--train", type=int, default=480)
    parser.add_argument("--validation", type=int, default=12)
    parser.add_argument("--test", type=int, default=60)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--save-steps", type=int, default=25)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--target-modules", default="q_proj,v_proj")
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--teacher", default="gpt-4o", help="the teacher's catalog entry")
    parser.add_argument("--usd-per-cpu-hour", type=Decimal, default=Decimal("0.04"))
    return parser.parse_args()


def _llama(lora: Path | None) -> Any:
    from llama_cpp import Llama

    path, threads = str(default_model_path()), max(1, (os.cpu_count() or 2) // 2)  # the local tier's default
    return Llama(model_path=path, lora_path=str(lora) if lora else None, n_ctx=512, n_threads=threads, verbose=False)


def score(lora: Path | None, test: list[tickets.Ticket]) -> tuple[float, list[dict[str, int]]]:
    """(accuracy, usage per request) on the test split, greedy."""
    model = _llama(lora)
    answers, usages = [], []
    for ticket in test:
        out = model.create_chat_completion(messages=tickets.messages(ticket.text), max_tokens=8, temperature=0)
        answers.append(out["choices"][0]["message"]["content"] or "")
        usages.append(out["usage"])
    return tickets.accuracy(answers, test), usages


def tokens_per_s(lora: Path, rounds: int = 3, tokens: int = 96) -> tuple[float, float]:
    """Median decode tokens/s of base and base + adapter, rounds alternating, EOS banned."""
    base, student = _llama(None), _llama(lora)
    rates: dict[str, list[float]] = {"base": [], "student": []}
    prompt = "<|im_start|>user\nWrite a long story about a lighthouse keeper.<|im_end|>\n<|im_start|>assistant\n"
    for _ in range(rounds):
        for name, model in (("base", base), ("student", student)):
            started = time.perf_counter()
            out = model.create_completion(
                prompt, max_tokens=tokens, temperature=0, logit_bias={model.token_eos(): -1e9}
            )
            rates[name].append(out["usage"]["completion_tokens"] / (time.perf_counter() - started))
    return statistics.median(rates["base"]), statistics.median(rates["student"])


def run_worker(job: Path, *, resume: bool, kill_after_step: int | None = None) -> dict[str, float]:
    """The job's worker; wall, CPU seconds and peak RSS (MB). With kill_after_step: SIGKILL it as
    soon as a checkpoint at or past that step is complete."""
    command = [sys.executable, "-m", "margin.tuning.worker", str(job)] + (["--resume"] if resume else [])
    started = time.monotonic()
    with (job / "worker.log").open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    killed_at = None
    while kill_after_step is not None and killed_at is None:
        done = [
            int(p.parent.name.split("-")[1]) for p in (job / jobs.CHECKPOINTS).glob("checkpoint-*/trainer_state.json")
        ]
        if any(step >= kill_after_step for step in done):
            os.kill(process.pid, signal.SIGKILL)
            killed_at = max(done)
        elif process.poll() is not None:
            raise SystemExit("the job ended before it could be killed: raise --steps")
        time.sleep(0.05)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return {
        "wall_s": time.monotonic() - started,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "exit": process.returncode,
        "killed_after_checkpoint": killed_at or 0,
    }


def _settings(args: argparse.Namespace) -> TrainSettings:
    return TrainSettings(
        steps=args.steps, batch_size=args.batch_size, save_steps=args.save_steps, rank=args.rank, alpha=2 * args.rank,
        target_modules=args.target_modules,
        learning_rate=args.learning_rate, max_length=128, seed=args.seed, threads=2, nice=0,
    )  # fmt: skip


def cost_per_1000(usages: list[dict[str, int]], cpu_s_per_request: float, args: argparse.Namespace) -> dict[str, str]:
    catalog = load_catalog()
    teacher = catalog.lookup(args.teacher)
    if teacher is None:
        raise SystemExit(f"{args.teacher}: not in the price catalog")
    total = Decimal(0)
    for u in usages:
        cost = price_usage(Usage(input_uncached=u["prompt_tokens"], output=max(1, u["completion_tokens"])), teacher)
        total += cost.total.usd
    student_cpu = Decimal(str(cpu_s_per_request)) * 1000 / 3600 * args.usd_per_cpu_hour
    return {
        "teacher_usd": str((total / len(usages) * 1000).quantize(Decimal("0.0001"))),
        "student_declared_usd": "0 (the local tier's declared price)",
        "student_cpu_usd": str(student_cpu.quantize(Decimal("0.0001"))),
    }


def phase_train(args: argparse.Namespace, splits: dict[str, list[tickets.Ticket]]) -> dict[str, Any]:
    out: dict[str, Any] = {"settings": _settings(args).model_dump(), "uptime": os.getloadavg()}
    started = time.process_time()
    out["base_accuracy"], usages = score(None, splits["test"])
    out["base_cpu_s_per_request"] = (time.process_time() - started) / len(splits["test"])
    job = create(args.work, dataset="tickets", base="local", settings=_settings(args))
    out["train"] = run_worker(job, resume=False)
    record = jobs.read_job(job)
    if record.state != "succeeded":
        raise SystemExit(f"training failed: {record.error}")
    out["train"]["train_seconds"] = record.train_seconds
    adapter = job / jobs.ADAPTER_GGUF
    started = time.process_time()
    out["student_accuracy"], _ = score(adapter, splits["test"])
    cpu_per_request = (time.process_time() - started) / len(splits["test"])
    out["teacher_accuracy"] = 1.0  # the exact answers are the teacher
    out["tokens_per_s_base"], out["tokens_per_s_adapter"] = tokens_per_s(adapter)
    out["cost_per_1000"] = cost_per_1000(usages, cpu_per_request, args)
    out["uptime_after"] = os.getloadavg()
    return out


def phase_resume(args: argparse.Namespace, splits: dict[str, list[tickets.Ticket]]) -> dict[str, Any]:
    job = create(args.work, dataset="tickets", base="local", settings=_settings(args))
    first = run_worker(job, resume=False, kill_after_step=args.steps // 2)
    second = run_worker(job, resume=True)
    record = jobs.read_job(job)
    if record.state != "succeeded":
        raise SystemExit(f"the resumed job failed: {record.error}")
    accuracy, _ = score(job / jobs.ADAPTER_GGUF, splits["test"])
    return {"killed": first, "resumed": second, "resumed_from": record.resumed_from, "resumed_accuracy": accuracy,
            "uptime": os.getloadavg()}  # fmt: skip


def report(results: dict[str, Any]) -> None:
    t = results.get("train")
    if t:
        base, student, teacher = t["base_accuracy"], t["student_accuracy"], t["teacher_accuracy"]
        print(f"load average at start / end: {t['uptime']} / {t['uptime_after']}")
        print(f"accuracy on the test split: base {base:.1%}  student {student:.1%}  teacher {teacher:.1%}")
        print(f"  student / teacher = {student / teacher:.1%} (target >= 90%, base < 50%: {base < 0.5})")
        tr = t["train"]
        s = t["settings"]
        print(f"training: {s['steps']} steps x {s['batch_size']}, wall {tr['wall_s']:.0f} s "
              f"(trainer {tr['train_seconds']:.0f} s), CPU {tr['cpu_s']:.0f} s, "
              f"worker peak RSS {tr['peak_rss_mb']:.0f} MB")  # fmt: skip
        ratio = t["tokens_per_s_adapter"] / t["tokens_per_s_base"]
        print(f"decode tokens/s: base {t['tokens_per_s_base']:.1f}  base+adapter {t['tokens_per_s_adapter']:.1f}  "
              f"ratio {ratio:.1%} (target >= 90%)")  # fmt: skip
        c = t["cost_per_1000"]
        print(f"cost per 1,000 test requests: teacher ${c['teacher_usd']}  student {c['student_declared_usd']}, "
              f"its CPU time ${c['student_cpu_usd']} at the assumed CPU-hour price")  # fmt: skip
    r = results.get("resume")
    if r and t:
        gap = abs(r["resumed_accuracy"] - t["student_accuracy"]) * 100
        print(f"kill -9 after {r['killed']['killed_after_checkpoint']}, resumed from {r['resumed_from']}: accuracy "
              f"{r['resumed_accuracy']:.1%} vs uninterrupted {t['student_accuracy']:.1%}, gap {gap:.1f} points "
              f"(target <= 1); load {r['uptime']}")  # fmt: skip


def main() -> None:
    args = _args()
    args.work.mkdir(parents=True, exist_ok=True)
    splits = tickets.generate(args.train, args.validation, args.test, seed=args.seed)
    tickets.write(args.work, "tickets", splits, seed=args.seed)
    store = args.work / "results.json"
    results = json.loads(store.read_text()) if store.exists() else {}
    if args.phase == "train":
        results = {"train": phase_train(args, splits)}
    else:
        results["resume"] = phase_resume(args, splits)
    store.write_text(json.dumps(results, indent=2))
    report(results)


if __name__ == "__main__":
    main()
