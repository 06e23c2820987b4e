"""Which of a client's request fields may reach an upstream.

margin forwards fields it does not know (new OpenAI parameters, vLLM's sampling extras) so that
clients are not held back by the gateway. But an upstream that is itself a gateway (LiteLLM, a
cloud router) may honour fields that pick its credentials or its destination: `api_key`,
`api_base`, `extra_headers`... Forwarded, they would let a client steer margin's upstream call with
margin's credentials. So top-level fields shaped like a credential or a route are dropped before
the call, by a documented deny list that a deployment can extend or exempt fields from
(`deployments[].passthrough`, docs/security.md).

Names compare case-insensitively with `-` read as `_`; patterns are shell-style (`*_token`).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from margin.config.model import PassthroughConfig
from margin.types import JSON

# Credential-shaped: a secret an upstream gateway could use in place of its own.
CREDENTIAL_FIELDS = (
    "*api_key*", "*apikey*", "*access_key*", "*private_key*", "*secret*", "*password*", "*passwd*",
    "*credential*", "authorization", "auth", "*_auth", "bearer", "token", "*_token", "cookie", "cookies",
)  # fmt: skip
# Routing-shaped: where, how or as whom an upstream gateway would make its own call.
ROUTING_FIELDS = (
    "api_base", "*_api_base", "base_url", "*_base_url", "api_url", "endpoint", "*_endpoint", "api_version",
    "api_type", "organization", "headers", "extra_headers", "extra_query", "extra_body", "proxy", "proxies",
    "custom_llm_provider", "litellm_*", "user_config", "model_list", "fallbacks", "*_fallbacks",
    "deployment_id", "region_name", "aws_*", "vertex_*", "azure_*",
)  # fmt: skip
DEFAULT_DENY = CREDENTIAL_FIELDS + ROUTING_FIELDS
_MAX_REMEMBERED = 4096  # field names whose verdict is kept (clients may send endless new names)


def _pattern(patterns: Iterable[str]) -> re.Pattern[str] | None:
    parts = [fnmatch.translate(_normal(p)) for p in patterns]
    return re.compile("|".join(parts)) if parts else None


def _normal(name: str) -> str:
    return name.lower().replace("-", "_")


@dataclass(slots=True)
class Passthrough:
    """The filter of one deployment: DEFAULT_DENY plus `deny`, minus whatever `allow` matches."""

    deny: tuple[str, ...] = ()
    allow: tuple[str, ...] = ()
    _denied: re.Pattern[str] | None = field(init=False, repr=False)
    _allowed: re.Pattern[str] | None = field(init=False, repr=False)
    _verdicts: dict[str, bool] = field(init=False, repr=False, default_factory=dict)

    @classmethod
    def of(cls, config: PassthroughConfig) -> Passthrough:
        return cls(deny=tuple(config.deny), allow=tuple(config.allow))

    def __post_init__(self) -> None:
        self._denied = _pattern((*DEFAULT_DENY, *self.deny))
        self._allowed = _pattern(self.allow)

    def denies(self, name: str) -> bool:
        verdict = self._verdicts.get(name)
        if verdict is None:
            normal = _normal(name)
            verdict = bool(self._denied and self._denied.fullmatch(normal)) and not (
                self._allowed is not None and self._allowed.fullmatch(normal)
            )
            if len(self._verdicts) < _MAX_REMEMBERED:
                self._verdicts[name] = verdict
        return verdict

    def dropped(self, body: JSON) -> list[str]:
        """The top-level fields of `body` this filter keeps from the upstream."""
        return [name for name in body if self.denies(name)]

    def filter(self, body: JSON) -> JSON:
        """`body` without the denied fields (`body` itself, untouched, when none is there)."""
        dropped = self.dropped(body)
        if not dropped:
            return body
        return {k: v for k, v in body.items() if k not in dropped}
