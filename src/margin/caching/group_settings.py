"""The effective cache settings of one model group: the `cache:` section with the route's overrides."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from margin.caching.semantic.engine import SemanticPolicy
from margin.caching.semantic.learned import cached_decision
from margin.config.model import CacheConfig

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RoutePolicy:
    exact: bool
    ttl_s: float
    cache_nondeterministic: bool
    semantic: SemanticPolicy | None  # None: the semantic cache is off for this route

    @property
    def active(self) -> bool:
        """Whether anything is cached on this route (the semantic cache stores full entries too)."""
        return self.exact or self.semantic is not None


def policy_for(config: CacheConfig, model_group: str) -> RoutePolicy:
    route = config.routes.get(model_group)
    semantic = route.semantic if route is not None and route.semantic is not None else config.semantic
    return RoutePolicy(
        exact=config.enabled and _pick(route.exact if route else None, config.exact),
        ttl_s=_pick(route.ttl_s if route else None, config.ttl_s),
        cache_nondeterministic=_pick(route.cache_nondeterministic if route else None, config.cache_nondeterministic),
        semantic=SemanticPolicy(
            threshold=semantic.threshold,
            verify_above=semantic.verify_above,
            guard=semantic.guard,
            max_candidates=semantic.max_candidates,
            mode=semantic.mode,
            shadow_floor=semantic.shadow_floor,
            learned=cached_decision(str(semantic.learned_model) if semantic.learned_model else None)
            if semantic.decision == "learned"
            else None,
            min_probability=semantic.min_probability,
        )
        if config.enabled and semantic.enabled
        else None,
    )


def _pick(override: T | None, default: T) -> T:
    return default if override is None else override
