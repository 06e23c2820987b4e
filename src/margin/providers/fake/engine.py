"""The fake model itself: deterministic answers, realistic usage, tool calls, chunking.

Shared by the in-process `fake` provider and `margin fake-upstream`, so both behave the same.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from margin.types import JSON


@dataclass(frozen=True, slots=True)
class FakeBehaviour:
    content: str | None = None  # None: echo the last user message
    chunks: int = 8
    dimensions: int = 16
    wrong: float = 0.0  # share of prompts answered WRONG_ANSWER instead (the `wrong=` fault)
    judge: bool = False  # answer judge prompts with a verdict (the `judge` fault)
    judge_bias: bool = False  # ... with a verdict that depends on the order of the texts (`judge_bias`)


WRONG_ANSWER = "I do not know."


def answered_wrongly(prompt: str, share: float) -> bool:
    """Whether the `wrong=SHARE` fault spoils the answer to `prompt`. Decided by a hash of the prompt,
    so the same prompts are answered wrongly on every run and by every process: a worse deployment
    whose errors are reproducible."""
    if share <= 0:
        return False
    digest = hashlib.sha256(prompt.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def message_text(message: JSON) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def count_tokens(text: str) -> int:
    """A stable stand-in for a tokenizer: about one token per 4 characters, at least one per word."""
    return max(len(text.split()), math.ceil(len(text) / 4)) if text else 0


def prompt_tokens(messages: list[JSON]) -> int:
    # 3 tokens of framing per message plus 3 to prime the reply, as OpenAI's chat format counts.
    return sum(count_tokens(message_text(m)) + 3 for m in messages) + 3


def answer_for(messages: list[JSON], behaviour: FakeBehaviour, params: JSON) -> str:
    last_user = next((m for m in reversed(messages) if m.get("role") == "user"), None)
    if behaviour.content is not None:
        text = behaviour.content
    else:
        text = message_text(last_user) if last_user else ""
        text = text or "Hello from the fake upstream."
    if answered_wrongly(message_text(last_user) if last_user else "", behaviour.wrong):
        text = WRONG_ANSWER
    if behaviour.judge:
        text = judge_reply(message_text(last_user) if last_user else "")
    if behaviour.judge_bias:
        text = biased_judge_reply(message_text(last_user) if last_user else "")
    prefill = _prefill(messages)
    if prefill and text.startswith(prefill):
        text = text[len(prefill) :]  # continue the assistant's own beginning, as prefill-capable models do
    response_format = params.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") in ("json_object", "json_schema"):
        text = orjson.dumps({"answer": text}).decode()
    return text


def judge_reply(prompt: str) -> str:
    """A verdict in the format margin's judge grader asks for (margin.evals.graders.judge): an answer
    that is WRONG_ANSWER scores 0 (or loses), any other the top of the scale (or wins); the same
    prompt always gets the same verdict, whatever the order of the texts."""
    if "WINNER:" in prompt:
        first = WRONG_ANSWER in _section(prompt, "Answer A:\n", "\n\nAnswer B:")
        second = WRONG_ANSWER in _section(prompt, "Answer B:\n", "\n\nWhich answer")
        return "WINNER: TIE" if first == second else "WINNER: B" if first else "WINNER: A"
    scale = re.search(r"a number from 0 to (\d+)", prompt)
    top = scale.group(1) if scale else "10"
    wrong = WRONG_ANSWER in _section(prompt, "Answer to grade:\n", "\n\n")
    return f"SCORE: {0 if wrong else top}"


def biased_judge_reply(prompt: str) -> str:
    """A judge that favours what it reads first (the `judge_bias` fault): scored, the top of the
    scale in the judge grader's first order (the rubric first, or the reference before the answer)
    and 0 in the swapped one; pairwise, always answer A. Its two orders never agree."""
    if "WINNER:" in prompt:
        return "WINNER: A"
    scale = re.search(r"a number from 0 to (\d+)", prompt)
    top = scale.group(1) if scale else "10"
    reference, answer = prompt.find("Reference answer"), prompt.find("Answer to grade:")
    first_order = reference < answer if reference >= 0 else prompt.startswith("Rubric:")
    return f"SCORE: {top if first_order else 0}"


def _section(text: str, start: str, end: str) -> str:
    """The text between `start` and the next `end` (to the end of `text` without one)."""
    at = text.find(start)
    if at < 0:
        return ""
    rest = text[at + len(start) :]
    stop = rest.find(end)
    return rest if stop < 0 else rest[:stop]


def _prefill(messages: list[JSON]) -> str:
    """The text of a trailing assistant message: the beginning of the answer, given by the caller."""
    if messages and messages[-1].get("role") == "assistant":
        return message_text(messages[-1])
    return ""


def tool_call_for(params: JSON, messages: list[JSON]) -> JSON | None:
    """Call the requested (or first) tool with arguments derived from its JSON schema."""
    tools = params.get("tools")
    choice = params.get("tool_choice", "auto")
    if not tools or choice == "none" or not isinstance(tools, list):
        return None
    if messages and messages[-1].get("role") == "tool":
        return None  # the tool already answered: reply in text
    tool = tools[0]
    if isinstance(choice, dict):
        wanted = choice.get("function", {}).get("name")
        tool = next((t for t in tools if t.get("function", {}).get("name") == wanted), tool)
    function = tool.get("function", {}) if isinstance(tool, dict) else {}
    schema = function.get("parameters") or {}
    last_user = next((message_text(m) for m in reversed(messages) if m.get("role") == "user"), "")
    args = {name: _example(spec, last_user) for name, spec in (schema.get("properties") or {}).items()}
    digest = hashlib.sha256(orjson.dumps([function.get("name"), args])).hexdigest()[:24]
    return {
        "id": f"call_{digest}",
        "type": "function",
        "function": {"name": function.get("name", "tool"), "arguments": orjson.dumps(args).decode()},
    }


def _example(spec: Any, text: str) -> Any:
    kind = spec.get("type") if isinstance(spec, dict) else None
    if isinstance(spec, dict) and spec.get("enum"):
        return spec["enum"][0]
    return {"number": 1, "integer": 1, "boolean": True, "array": [], "object": {}}.get(str(kind), text)


def truncate(text: str, max_tokens: int | None) -> tuple[str, str]:
    """Cut the answer at `max_tokens` words; returns (text, finish_reason)."""
    if max_tokens is None:
        return text, "stop"
    words = text.split(" ")
    if count_tokens(text) <= max_tokens:
        return text, "stop"
    kept: list[str] = []
    for word in words:
        if count_tokens(" ".join([*kept, word])) > max_tokens:
            break
        kept.append(word)
    return " ".join(kept), "length"


def split_chunks(text: str, pieces: int) -> list[str]:
    if not text:
        return [""]
    size = max(1, math.ceil(len(text) / pieces))
    return [text[i : i + size] for i in range(0, len(text), size)]


def completion_id(messages: list[JSON] | str, model: str) -> str:
    return "chatcmpl-" + hashlib.sha256(orjson.dumps([messages, model])).hexdigest()[:24]


@dataclass(slots=True)
class FakeAnswer:
    """One choice of a fake completion: text or a tool call, and why it stopped."""

    text: str
    finish_reason: str
    tool_call: JSON | None


def answers(messages: list[JSON], behaviour: FakeBehaviour, params: JSON) -> list[FakeAnswer]:
    n = params.get("n") if isinstance(params.get("n"), int) else 1
    max_tokens = params.get("max_completion_tokens", params.get("max_tokens"))
    result = []
    for _ in range(max(1, n or 1)):
        call = tool_call_for(params, messages)
        if call is not None:
            result.append(FakeAnswer("", "tool_calls", call))
            continue
        text, reason = truncate(answer_for(messages, behaviour, params), max_tokens)
        result.append(FakeAnswer(text, reason, None))
    return result


def usage_block(messages: list[JSON], choices: list[FakeAnswer]) -> JSON:
    prompt = prompt_tokens(messages)
    completion = sum(
        count_tokens(c.text) if c.tool_call is None else count_tokens(c.tool_call["function"]["arguments"]) + 5
        for c in choices
    )
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def chat_completion(messages: list[JSON], model: str, behaviour: FakeBehaviour, params: JSON) -> JSON:
    choices = answers(messages, behaviour, params)
    return {
        "id": completion_id(messages, model),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [_choice(i, c, params) for i, c in enumerate(choices)],
        "usage": usage_block(messages, choices),
    }


def _choice(index: int, answer: FakeAnswer, params: JSON) -> JSON:
    message: JSON = {"role": "assistant", "content": answer.text if answer.tool_call is None else None}
    if answer.tool_call is not None:
        message["tool_calls"] = [answer.tool_call]
    choice: JSON = {
        "index": index,
        "message": message,
        "finish_reason": answer.finish_reason,
        "logprobs": None,
    }
    if params.get("logprobs"):
        choice["logprobs"] = {"content": _logprobs(answer.text)}
    return choice


def _logprobs(text: str) -> list[JSON]:
    # Deterministic confidences: longer words are "less certain". Enough to test a cascade's check.
    return [
        {"token": w, "logprob": -0.05 * len(w), "bytes": list(w.encode()), "top_logprobs": []} for w in text.split()
    ]


def chat_chunks(messages: list[JSON], model: str, behaviour: FakeBehaviour, params: JSON) -> Iterator[JSON]:
    """The same answer as `chat_completion`, as OpenAI stream chunks (usage chunk last if asked)."""
    choices = answers(messages, behaviour, params)
    base = {
        "id": completion_id(messages, model),
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_fake",
    }
    for index, answer in enumerate(choices):
        yield {
            **base,
            "choices": [{"index": index, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}],
        }
        if answer.tool_call is not None:
            yield {
                **base,
                "choices": [
                    {
                        "index": index,
                        "delta": {"tool_calls": [{"index": 0, **answer.tool_call}]},
                        "finish_reason": None,
                    }
                ],
            }
        else:
            for piece in split_chunks(answer.text, behaviour.chunks):
                yield {
                    **base,
                    "choices": [{"index": index, "delta": {"content": piece}, "finish_reason": None}],
                }
        yield {**base, "choices": [{"index": index, "delta": {}, "finish_reason": answer.finish_reason}]}
    options = params.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage"):
        yield {**base, "choices": [], "usage": usage_block(messages, choices)}


def text_completion(prompt: str, model: str, behaviour: FakeBehaviour, params: JSON) -> JSON:
    messages = [{"role": "user", "content": prompt}]
    chat = chat_completion(messages, model, behaviour, {k: v for k, v in params.items() if k != "tools"})
    return {
        "id": chat["id"].replace("chatcmpl", "cmpl"),
        "object": "text_completion",
        "created": chat["created"],
        "model": model,
        "choices": [
            {
                "index": c["index"],
                "text": c["message"]["content"] or "",
                "finish_reason": c["finish_reason"],
                "logprobs": None,
            }
            for c in chat["choices"]
        ],
        "usage": {
            **chat["usage"],
            "prompt_tokens": count_tokens(prompt),
            "total_tokens": count_tokens(prompt) + chat["usage"]["completion_tokens"],
        },
    }


def embedding_vector(text: str, dimensions: int) -> list[float]:
    """A deterministic unit vector per text: equal texts embed equally, different texts differ."""
    digest = b""
    counter = 0
    while len(digest) < dimensions * 2:
        digest += hashlib.sha256(f"{counter}:{text}".encode()).digest()
        counter += 1
    raw = [(int.from_bytes(digest[2 * i : 2 * i + 2], "big") / 32767.5) - 1.0 for i in range(dimensions)]
    norm = math.sqrt(sum(v * v for v in raw)) or 1.0
    return [v / norm for v in raw]


def embeddings(inputs: list[str] | list[list[int]], model: str, dimensions: int) -> JSON:
    texts = [x if isinstance(x, str) else " ".join(map(str, x)) for x in inputs]
    tokens = sum(count_tokens(t) for t in texts)
    return {
        "object": "list",
        "model": model,
        "data": [
            {"object": "embedding", "index": i, "embedding": embedding_vector(t, dimensions)}
            for i, t in enumerate(texts)
        ],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
