"""What makes two requests the same: the canonical exact-cache key and the semantic partition.

The key hashes everything that shapes the answer (the model group and its deployments, every
message including the system prompt, tool definitions, sampling parameters, response format...).
Only the cache directive itself is left out. The tenant is part of both the hashed material and
the readable key prefix, so a lookup can never reach another tenant's entry even by a bug in a
backend's partitioning.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

import orjson

from margin.caching.directives import METADATA_FIELD
from margin.types import JSON, ChatRequest, Principal, RouteDecision

TenantScope = Literal["key", "team", "org"]
KEY_VERSION = "v1"
_REMOTE_SCHEMES = ("http://", "https://", "ftp://", "gs://", "s3://")


def tenant_of(principal: Principal, scope: TenantScope) -> str:
    """The partition a principal's entries live in. Teams and keys are qualified by org: two orgs
    may both have a team called "default". Each name is percent-encoded, so the separators (`/`
    here, `|` in the key) cannot occur inside one: org `a/b` + team `c` and org `a` + team `b/c`
    are two partitions. Names made of letters, digits and `-_.~` read as they are."""
    org = _part(principal.org)
    if scope == "org":
        return f"org:{org}"
    if scope == "team":
        return f"team:{org}/{_part(principal.team)}"
    return f"key:{org}/{_part(principal.key_id)}"


def _part(name: str) -> str:
    return quote(name, safe="")


def model_identity(decision: RouteDecision | None, requested: str) -> str:
    """The model group plus the deployments that may answer it: a config change that points the
    group at other models starts a fresh cache instead of serving the old models' answers."""
    if decision is None:
        return requested
    return f"{decision.model_group}@{','.join(decision.deployments)}"


def canonical(value: Any) -> Any:
    """JSON with integral floats as ints (temperature 0 == 0.0) and nulls dropped from objects
    (an explicit null means the default, as an absent field does)."""
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def shaping_params(params: JSON) -> JSON:
    """Every body field except margin's own cache directive."""
    metadata = params.get("metadata")
    if not isinstance(metadata, dict) or METADATA_FIELD not in metadata:
        return params
    rest = {k: v for k, v in metadata.items() if k != METADATA_FIELD}
    shaped = {k: v for k, v in params.items() if k != "metadata"}
    if rest:
        shaped["metadata"] = rest
    return shaped


def _digest(material: Any) -> str:
    return hashlib.sha256(orjson.dumps(canonical(material), option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True, slots=True)
class ExactKey:
    tenant: str
    model: str
    digest: str

    @property
    def value(self) -> str:
        """`tenant|model|digest`: readable prefixes, so invalidation by key prefix can select a
        tenant, a tenant's model, or one entry."""
        return f"{self.tenant}|{self.model}|{self.digest}"


def exact_key(request: ChatRequest, *, tenant: str, model: str) -> ExactKey:
    material = [
        KEY_VERSION,
        tenant,
        model,
        request.kind,
        request.messages,
        request.prompt,
        shaping_params(request.params),
    ]
    return ExactKey(tenant=tenant, model=model, digest=_digest(material))


def semantic_partition(request: ChatRequest, *, tenant: str, model: str) -> str:
    """Requests whose only difference is the wording of the last user turn share a partition:
    same tenant, model, parameters, system prompt, tools and earlier turns (fingerprinted)."""
    earlier = request.messages[:-1]
    material = [KEY_VERSION, "semantic", tenant, model, request.kind, earlier, shaping_params(request.params)]
    return f"{tenant}|{model}|{_digest(material)[:32]}"


def is_deterministic(params: JSON) -> bool:
    """temperature 0 or a fixed seed. OpenAI's default temperature is 1, so absent means sampled."""
    temperature = params.get("temperature")
    if isinstance(temperature, int | float) and not isinstance(temperature, bool) and temperature == 0:
        return True
    seed = params.get("seed")
    return isinstance(seed, int) and not isinstance(seed, bool)


def has_remote_media(request: ChatRequest) -> bool:
    """A URL the upstream fetches can change behind the same key: such requests are not cached."""
    for message in request.messages:
        content = message.get("content")
        if isinstance(content, list) and any(_remote_part(part) for part in content):
            return True
    return False


def _remote_part(part: object) -> bool:
    if not isinstance(part, dict) or part.get("type") in (None, "text"):
        return False
    for value in part.values():
        url = value.get("url") if isinstance(value, dict) else value
        if isinstance(url, str) and url.lower().startswith(_REMOTE_SCHEMES):
            return True
    return False


def last_user_text(request: ChatRequest) -> str | None:
    """The text of the final message when it is a plain-text user turn; None otherwise (tool
    results, assistant prefill and images are left to the exact cache)."""
    if request.kind != "chat" or not request.messages:
        return None
    last = request.messages[-1]
    if last.get("role") != "user":
        return None
    content = last.get("content")
    if isinstance(content, str):
        return content.strip() or None
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in content):
        text = " ".join(str(p.get("text", "")) for p in content).strip()
        return text or None
    return None
