"""The drift trigger (docs/tuning.md, "The router and the drift trigger"): when the production
sample's re-evaluation shows an opted-in group's cheap deployment scoring below its baseline
(margin.rollout.drift), margin proposes a new tuning job on fresh data: a warning in the log and a
line in `<data_dir>/tuning/proposals.jsonl` (one per drift run), which `margin tune drift` lists
and, with `tuning.drift.action: start`, acts on (a fresh dataset, a queued training job).

Only the cheap deployment's drift proposes: a drifting premium tier is the teacher's problem, not
one a student can fix."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from margin.config.model import MarginConfig
from margin.storage.rollouts import DriftRecord

PROPOSALS = "proposals.jsonl"
log = logging.getLogger("margin.tuning")


@dataclass(frozen=True, slots=True)
class Proposal:
    run_id: str  # the drift run that triggered it
    model_group: str
    deployment: str
    score: float
    baseline: float
    at: float  # when the drift run ran
    teacher: str
    action: str  # propose | start

    def line(self) -> str:
        return (
            f"{self.model_group}: {self.deployment} scored {self.score:.3f} below its baseline {self.baseline:.3f} "
            f"(drift run {self.run_id}): propose `margin tune dataset build --group {self.model_group} "
            f"--teacher {self.teacher} --since 7d`, then `margin tune train`"
        )


def cheap_of(config: MarginConfig, group: str) -> str | None:
    for candidate in config.models:
        if candidate.name == group:
            return candidate.tiers[0].deployments[0] if candidate.tiers else candidate.deployments[0]
    return None


def proposal_for(config: MarginConfig, run: DriftRecord) -> Proposal | None:
    """A proposal when `run` is a drift of an opted-in group's cheap deployment (and the trigger is on)."""
    source = config.tuning.source(run.model_group)
    action = config.tuning.drift.action
    if source is None or action == "off" or not run.drifted or run.score is None or run.baseline is None:
        return None
    if run.deployment != cheap_of(config, run.model_group):
        return None
    return Proposal(run.run_id, run.model_group, run.deployment, run.score, run.baseline, run.at, source.teacher,
                    action)  # fmt: skip


def proposals_path(data_dir: Path) -> Path:
    return data_dir / "tuning" / PROPOSALS


def read_proposals(data_dir: Path) -> list[Proposal]:
    path = proposals_path(data_dir)
    out = []
    for line in path.read_bytes().splitlines() if path.is_file() else ():
        try:
            out.append(Proposal(**orjson.loads(line)))
        except (orjson.JSONDecodeError, TypeError):
            continue  # a line cut by a crash: the rest still reads
    return out


def record_proposals(data_dir: Path, proposals: Iterable[Proposal]) -> list[Proposal]:
    """Append the proposals not recorded yet (by drift run); the new ones."""
    known = {p.run_id for p in read_proposals(data_dir)}
    new = [p for p in proposals if p.run_id not in known]
    if new:
        path = proposals_path(data_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("ab") as out:
            out.write(b"".join(orjson.dumps(asdict(p)) + b"\n" for p in new))
    return new


class DriftProposer:
    """Given to the drift watch: each drift run of an opted-in cheap deployment becomes a proposal."""

    def __init__(self, config: MarginConfig, data_dir: Path) -> None:
        self.config = config
        self.data_dir = data_dir

    def __call__(self, run: DriftRecord) -> None:
        proposal = proposal_for(self.config, run)
        if proposal is None:
            return
        log.warning("tuning proposal: %s", proposal.line())
        try:
            record_proposals(self.data_dir, [proposal])
        except OSError as exc:  # the log line stands; the CLI recomputes from the drift history
            log.warning("tuning proposal not recorded in %s: %s", proposals_path(self.data_dir), exc)


def proposal_view(proposal: Proposal) -> dict[str, Any]:
    return {**asdict(proposal), "at_iso": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(proposal.at))}
