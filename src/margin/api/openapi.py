"""/openapi.json, generated from the same pydantic models that validate requests."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic.json_schema import models_json_schema

from margin import __version__
from margin.api.openapi_admin import REQUEST_MODELS, admin_paths
from margin.api.schemas import ChatCompletionBody, CompletionBody, EmbeddingBody

_ERROR = {"$ref": "#/components/schemas/Error"}
_ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
            "required": ["message", "type"],
        }
    },
}


_ANTHROPIC_MESSAGES = {
    "type": "object",
    "description": "Anthropic Messages API request; see Anthropic's documentation for every field.",
    "required": ["model", "max_tokens", "messages"],
    "properties": {
        "model": {"type": "string", "minLength": 1},
        "max_tokens": {"type": "integer", "minimum": 1},
        "messages": {"type": "array", "items": {"type": "object"}},
        "system": {"anyOf": [{"type": "string"}, {"type": "array"}]},
        "stream": {"type": "boolean"},
    },
}


def _post(schema: str, summary: str) -> dict[str, Any]:
    errors = {
        str(s): {"description": "error", "content": {"application/json": {"schema": _ERROR}}}
        for s in (400, 401, 402, 404, 413, 415, 429, 502, 503, 504)
    }
    return {
        "post": {
            "summary": summary,
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": schema}}}},
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}},
                **errors,
            },
        }
    }


def _get(summary: str) -> dict[str, Any]:
    return {"get": {"summary": summary, "responses": {"200": {"description": "OK"}}}}


@cache
def openapi_document() -> dict[str, Any]:
    keys, defs = models_json_schema(
        [
            (ChatCompletionBody, "validation"),
            (CompletionBody, "validation"),
            (EmbeddingBody, "validation"),
            *((model, "validation") for model in REQUEST_MODELS),
        ],
        ref_template="#/components/schemas/{model}",
    )
    schemas = dict(defs.get("$defs", {}))
    schemas["Error"] = _ERROR_SCHEMA
    schemas["AnthropicMessages"] = _ANTHROPIC_MESSAGES
    ref = {model: value["$ref"] for (model, _), value in keys.items()}
    return {
        "openapi": "3.1.0",
        "info": {"title": "margin", "version": __version__},
        "paths": {
            "/v1/chat/completions": _post(ref[ChatCompletionBody], "Chat completion (JSON or SSE)"),
            "/v1/completions": _post(ref[CompletionBody], "Legacy text completion"),
            "/v1/embeddings": _post(ref[EmbeddingBody], "Embeddings"),
            "/v1/messages": _post("#/components/schemas/AnthropicMessages", "Anthropic Messages API (JSON or SSE)"),
            "/v1/models": _get("List models"),
            "/healthz": _get("Liveness"),
            "/readyz": _get("Readiness"),
            **admin_paths(),
        },
        "components": {
            "schemas": schemas,
            # the admin key; with none configured, admin endpoints answer callers on this machine only
            "securitySchemes": {
                "adminKey": {"type": "http", "scheme": "bearer"},
                "metricsToken": {"type": "http", "scheme": "bearer", "description": "server.metrics_token"},
            },
        },
    }
