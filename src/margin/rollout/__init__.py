"""Rollouts beside the request path (docs/rollouts.md): a candidate deployment replaces a model
group's stable one through pending -> gated -> shadow -> canary steps -> promoted, or rolled_back /
aborted from any state. State lives in the database (`RolloutStore`), so every replica applies the
same split and a restarted one resumes where the rollout was.

The request path only asks "which arm?" (`margin.rollout.split`, a pure sticky hash over a snapshot)
and hands finished requests to the signal buffer; decisions (`margin.rollout.decide`, always-valid
confidence sequences in `margin.rollout.stats`) run in a periodic task, off the request path.
"""
