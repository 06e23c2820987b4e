"""`endpoints_from:`: the replicas of one deployment found in DNS (the pods behind a Kubernetes
headless Service) instead of a static `endpoints:` list (docs/deploy.md, "Pods behind a headless Service")."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from margin.config.base import Strict

_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*\.?$")


class EndpointDiscovery(Strict):
    """Resolve `dns` to all its A/AAAA records every `refresh_s`; each address is one replica at
    `scheme://address:port` + `path`."""

    dns: str = Field(description="a name whose A/AAAA records are the replicas, e.g. vllm-headless.ns.svc")
    port: int = Field(ge=1, le=65535, description="the model server's port on every replica")
    scheme: Literal["http", "https"] = "http"
    path: str = Field("/v1", description="appended to scheme://address:port, e.g. /v1")
    refresh_s: float = Field(10.0, gt=0, le=3600, description="seconds between resolutions")
    family: Literal["any", "ipv4", "ipv6"] = Field("any", description="which records count: A, AAAA or both")

    @field_validator("dns")
    @classmethod
    def _hostname(cls, value: str) -> str:
        if not _HOSTNAME.match(value):
            raise ValueError(f"endpoints_from.dns must be a DNS name (no scheme, port or path), got {value!r}")
        return value

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if value and not value.startswith("/"):
            raise ValueError(f"endpoints_from.path must start with '/', got {value!r}")
        return value.rstrip("/")
