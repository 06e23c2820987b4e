"""Legacy `/v1/completions` served by a chat-only upstream: prompt in as a user turn, text out."""

from __future__ import annotations

from dataclasses import replace

from margin.types import JSON, ChatRequest, ChatResult, Chunk


def as_chat(request: ChatRequest) -> ChatRequest:
    prompt = request.prompt
    text = prompt if isinstance(prompt, str) else "".join(str(p) for p in prompt or [])
    params = {k: v for k, v in request.params.items() if k not in ("echo", "suffix", "best_of")}
    return replace(request, kind="chat", messages=[{"role": "user", "content": text}], params=params, prompt=None)


def completion_result(result: ChatResult) -> ChatResult:
    body = result.body
    choices = [
        {
            "index": c.get("index", i),
            "text": (c.get("message") or {}).get("content") or "",
            "finish_reason": c.get("finish_reason"),
            "logprobs": None,
        }
        for i, c in enumerate(body.get("choices") or [])
    ]
    out: JSON = {
        "id": str(body.get("id", "")).replace("chatcmpl", "cmpl"),
        "object": "text_completion",
        "created": body.get("created"),
        "model": body.get("model"),
        "choices": choices,
    }
    if "usage" in body:
        out["usage"] = body["usage"]
    return ChatResult(body=out, usage=result.usage, model=result.model)


def completion_chunk(chunk: Chunk) -> Chunk:
    body = chunk.body
    choices = [
        {
            "index": c.get("index", 0),
            "text": (c.get("delta") or {}).get("content") or "",
            "finish_reason": c.get("finish_reason"),
            "logprobs": None,
        }
        for c in body.get("choices") or []
    ]
    out: JSON = {
        "id": str(body.get("id", "")).replace("chatcmpl", "cmpl"),
        "object": "text_completion",
        "created": body.get("created"),
        "model": body.get("model"),
        "choices": choices,
    }
    if body.get("usage") is not None:
        out["usage"] = body["usage"]
    return Chunk(body=out, usage=chunk.usage, usage_so_far=chunk.usage_so_far)
