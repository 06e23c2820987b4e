"""Provider plug-ins: a name in the config maps to an adapter class, imported on first use.

Third-party adapters register under the `margin.providers` entry-point group, so a new protocol
is a package, not an edit to the core.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from margin.config.model import DeploymentConfig
from margin.errors import ConfigError
from margin.providers.base import Provider

BUILTIN: dict[str, str] = {
    "openai_compat": "margin.providers.openai_compat:OpenAICompatProvider",
    "anthropic": "margin.providers.anthropic:AnthropicProvider",
    "local": "margin.providers.local:LocalProvider",
    "local_embed": "margin.providers.local_embed:LocalEmbedProvider",
    "fake": "margin.providers.fake.adapter:FakeProvider",
}


def build_provider(deployment: DeploymentConfig) -> Provider:
    target = BUILTIN.get(deployment.provider) or _plugin_target(deployment.provider)
    if target is None:
        raise ConfigError(f"deployment {deployment.name!r}: no provider named {deployment.provider!r}")
    module_name, attr = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"deployment {deployment.name!r}: provider {deployment.provider!r} needs an optional "
            f"dependency that is not installed ({exc.name}); see the README's extras"
        ) from exc
    provider: Provider = getattr(module, attr)(deployment)
    return provider


def _plugin_target(name: str) -> str | None:
    for entry in entry_points(group="margin.providers"):
        if entry.name == name:
            return str(entry.value)
    return None
