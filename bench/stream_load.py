"""Concurrent streamed chat completions against an OpenAI-compatible server (margin or llama-server):
per stream the time to first token and every token's arrival, per level the aggregate tokens/s.

One asyncio loop and one httpx client drive every stream, the same for both servers, so the client's
own cost (on the same cores) is the same for both.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

# short prompts that write long (greedy decoding, no ignore_eos: both servers stop at the same place)
STORY_PROMPTS = [
    "Write a long story about a lighthouse keeper and the sea.",
    "Write a long story about a baker who opens a shop on the moon.",
    "Write a long story about a dragon who is afraid of fire.",
    "Write a long story about two friends who sail around the world.",
    "Write a long story about a robot learning to paint.",
    "Write a long story about a small village in the mountains in winter.",
    "Write a long story about a detective who solves crimes with music.",
    "Write a long story about a girl who finds a map in her attic.",
    "Write a long story about a train that never stops.",
    "Write a long story about a gardener who grows a giant pumpkin.",
    "Write a long story about a cat who becomes the mayor of a town.",
    "Write a long story about an astronaut stranded on Mars.",
    "Write a long story about a library where the books talk at night.",
    "Write a long story about a fisherman and a golden fish.",
    "Write a long story about a knight who hates horses.",
    "Write a long story about a city built under the ocean.",
]
NO_CACHE = {"cache-control": "no-cache, no-store"}  # margin's response cache must not answer


@dataclass
class Stream:
    started: float  # perf_counter at send
    first: float | None = None  # perf_counter of the first content token
    arrivals: list[float] = field(default_factory=list)  # perf_counter of every content chunk
    tokens: int = 0  # completion tokens (usage when the server reports it, else content chunks)
    ended: float = 0.0
    error: str | None = None

    @property
    def ttft(self) -> float:
        return (self.first or self.ended) - self.started

    def gaps(self, since: float = 0.0, until: float = float("inf")) -> list[float]:
        """Inter-token gaps (s) of the tokens that arrived in [since, until]."""
        pairs = zip(self.arrivals, self.arrivals[1:], strict=False)
        return [b - a for a, b in pairs if since <= b <= until]


@dataclass
class Level:
    concurrency: int
    streams: list[Stream]
    wall: float

    @property
    def tokens_per_s(self) -> float:
        return sum(s.tokens for s in self.streams) / self.wall

    @property
    def errors(self) -> list[str]:
        return [s.error for s in self.streams if s.error]


def chat_body(model: str, messages: list[dict[str, str]], max_tokens: int) -> dict[str, Any]:
    return {
        "model": model,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0,
        "seed": 1,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def story(index: int, tag: str = "") -> list[dict[str, str]]:
    """A story prompt; a `tag` (at the front) keeps a server's prompt cache from answering it."""
    prompt = STORY_PROMPTS[index % len(STORY_PROMPTS)]
    return [{"role": "user", "content": f"Story {tag}. {prompt}" if tag else prompt}]


async def stream_once(client: httpx.AsyncClient, body: dict[str, Any], record: Stream | None = None) -> Stream:
    """One streamed request; `record` (filled as tokens arrive) lets the caller watch it in flight."""
    record = record or Stream(started=0.0)
    record.started = time.perf_counter()
    chunks = 0
    try:
        async with client.stream("POST", "/v1/chat/completions", json=body, headers=NO_CACHE) as response:
            if response.status_code != 200:
                record.error = f"HTTP {response.status_code}: {(await response.aread())[:200]!r}"
                return record
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = json.loads(line[6:])
                if event.get("usage"):
                    record.tokens = int(event["usage"].get("completion_tokens") or 0)
                for choice in event.get("choices") or []:
                    if (choice.get("delta") or {}).get("content"):
                        now = time.perf_counter()
                        record.first = record.first or now
                        record.arrivals.append(now)
                        chunks += 1
    except httpx.HTTPError as exc:
        record.error = f"{type(exc).__name__}: {exc}"
    finally:
        record.ended = time.perf_counter()
        record.tokens = record.tokens or chunks
    return record


async def run_level(url: str, model: str, concurrency: int, max_tokens: int, offset: int = 0, tag: str = "") -> Level:
    """`concurrency` streams at once, each its own story prompt (offset picks which, `tag` marks them)."""
    limits = httpx.Limits(max_connections=concurrency + 4)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
        started = time.perf_counter()
        bodies = [chat_body(model, story(offset + i, tag), max_tokens) for i in range(concurrency)]
        streams = await asyncio.gather(*(stream_once(client, b) for b in bodies))
        return Level(concurrency, list(streams), time.perf_counter() - started)


async def one(url: str, body: dict[str, Any]) -> Stream:
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        return await stream_once(client, body)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]
