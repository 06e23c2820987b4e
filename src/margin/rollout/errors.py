"""What an operator can get wrong about a rollout; each is a clear 4xx (CLI: the message alone)."""

from __future__ import annotations

from margin.errors import MarginError


class RolloutError(MarginError):
    status = 400
    type = "invalid_request_error"
    code = "rollout_invalid"


class UnknownRolloutTarget(RolloutError):
    """An unknown model group or deployment, or a stable deployment the group does not have."""

    status = 404
    code = "rollout_target_not_found"


class RolloutNotFound(RolloutError):
    status = 404
    code = "rollout_not_found"


class RolloutConflict(RolloutError):
    """A second live rollout on a group, an action the rollout's state does not allow, or a change
    another replica made first."""

    status = 409
    code = "rollout_conflict"
