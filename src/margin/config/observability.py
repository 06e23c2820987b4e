"""`logging:`: the log format (docs/observability.md#logs); `tracing:`: OpenTelemetry traces."""

from __future__ import annotations

import importlib.util
from typing import Literal

from pydantic import Field, field_validator, model_validator

from margin.config.base import EnvSecret, Strict, parse_secret


class LoggingConfig(Strict):
    format: Literal["text", "json"] = Field(
        "text", description="text: uvicorn's lines; json: one object per line with the request id and principal ids"
    )


OTEL_EXTRA_MODULES = ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.http")


def missing_otel_modules() -> list[str]:
    """The `otel` extra's modules that cannot be imported here."""
    return [name for name in OTEL_EXTRA_MODULES if not _installed(name)]


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a blocked import, a missing parent package
        return False


class TracingConfig(Strict):
    """`tracing:`: OpenTelemetry spans per request over OTLP/HTTP (docs/observability.md#opentelemetry)."""

    enabled: bool = Field(False, description="export a trace per request (needs the `otel` extra)")
    endpoint: str = Field(
        "http://127.0.0.1:4318/v1/traces", pattern=r"^https?://", description="the collector's OTLP/HTTP traces URL"
    )
    sample_ratio: float = Field(
        1.0, ge=0, le=1, description="share of new traces kept; a client's traceparent decides for its own"
    )
    service_name: str = Field("margin", min_length=1, description="the service.name resource attribute")
    headers: dict[str, EnvSecret] = Field(
        default_factory=dict, description="sent with every export, e.g. authorization: env:VAR"
    )
    max_queue_size: int = Field(2048, ge=1, le=1_000_000, description="spans waiting for export; more are dropped")
    max_export_batch_size: int = Field(512, ge=1, le=100_000, description="spans per OTLP request")
    schedule_delay_ms: int = Field(1000, ge=1, le=600_000, description="longest wait before a partial batch goes")
    export_timeout_s: float = Field(10.0, gt=0, le=300, description="one OTLP request's timeout")

    @field_validator("headers", mode="before")
    @classmethod
    def _secrets(cls, value: object) -> object:
        return {k: parse_secret(v) for k, v in value.items()} if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _extra_installed(self) -> TracingConfig:
        if self.max_export_batch_size > self.max_queue_size:
            raise ValueError("tracing: max_export_batch_size cannot exceed max_queue_size")
        missing = missing_otel_modules() if self.enabled else []
        if missing:
            raise ValueError(
                f"tracing: enabled needs the `otel` extra ({', '.join(missing)} not installed): "
                "pip install 'margin[otel]'"
            )
        return self
