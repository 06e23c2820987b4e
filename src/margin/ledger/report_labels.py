"""What people call a report's groups: the ledger stores ids (key ids, cost ranks), reports show
names (a key's name; a cost rank with the deployments, and routing tiers, that carry it)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable

from margin.config.model import MarginConfig
from margin.storage.protocols import KeyRecord


def key_labels(records: Iterable[KeyRecord]) -> dict[str, str]:
    """key id -> its name; `name (key id)` where two keys share a name; unnamed keys keep their id."""
    keys = list(records)
    seen = Counter(k.name for k in keys if k.name)
    return {k.key_id: k.name if seen[k.name] == 1 else f"{k.name} ({k.key_id})" for k in keys if k.name}


def tier_names(config: MarginConfig) -> dict[str, list[str]]:
    """deployment -> the routing tiers it serves, as `group/tier`, in config order."""
    tiers: dict[str, list[str]] = defaultdict(list)
    for group in config.models:
        for tier in group.tiers:
            for deployment in tier.deployments:
                tiers[deployment].append(f"{group.name}/{tier.name}")
    return dict(tiers)


def _with_tiers(deployment: str, tiers: dict[str, list[str]]) -> str:
    names = tiers.get(deployment)
    return deployment if not names else f"{deployment} [tier {', '.join(names)}]"


def deployment_labels(config: MarginConfig) -> dict[str, str]:
    """deployment -> the name with the routing tiers it serves (unchanged when it serves none)."""
    tiers = tier_names(config)
    return {d.name: _with_tiers(d.name, tiers) for d in config.deployments if d.name in tiers}


def cost_rank_labels(config: MarginConfig) -> dict[str, str]:
    """cost rank -> `cost_rank N: deployment [tier ...], ...`, from the config the report reads with."""
    tiers = tier_names(config)
    by_rank: dict[int, list[str]] = defaultdict(list)
    for deployment in config.deployments:
        by_rank[deployment.cost_rank].append(_with_tiers(deployment.name, tiers))
    return {str(rank): f"cost_rank {rank}: {', '.join(names)}" for rank, names in by_rank.items()}
