"""Shared building blocks of the configuration models: strict models and secrets."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, SecretStr

from margin.config.environment import read_reference


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EnvSecret(Strict):
    """A secret given as `env:VAR` (resolved at startup) or inline (discouraged, never printed)."""

    reference: str | None = None
    value: SecretStr | None = None

    def resolve(self) -> str | None:
        if self.reference is not None:
            return read_reference(self.reference)
        return self.value.get_secret_value() if self.value is not None else None

    def masked(self) -> str:
        if self.reference is not None:
            return f"env:{self.reference}"
        return "********" if self.value is not None else ""


def parse_secret(value: object) -> object:
    if isinstance(value, str):
        if value.startswith("env:"):
            return {"reference": value[4:]}
        return {"value": value}
    return value
