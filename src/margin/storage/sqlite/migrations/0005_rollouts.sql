-- Rollouts (docs/rollouts.md): a candidate deployment replacing a model group's stable one through
-- gated, shadow and canary steps. One live rollout per group (the partial unique index); every change
-- is a compare-and-set on `version` and leaves one audited transition row. Signals are per-arm
-- windows (one row per rollout, step and arm) that replicas add to; money is exact decimal text.

CREATE TABLE rollouts (
    rollout_id TEXT PRIMARY KEY,
    model_group TEXT NOT NULL,
    stable TEXT NOT NULL,
    candidate TEXT NOT NULL,
    state TEXT NOT NULL,
    step INTEGER NOT NULL,
    paused INTEGER NOT NULL,
    plan TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    stage_started_at REAL NOT NULL,
    version INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE UNIQUE INDEX rollouts_one_live_per_group ON rollouts (model_group)
    WHERE state NOT IN ('promoted', 'rolled_back', 'aborted');
CREATE INDEX rollouts_by_group ON rollouts (model_group, created_at);

CREATE TABLE rollout_transitions (
    rollout_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    at REAL NOT NULL,
    from_state TEXT NOT NULL,
    to_state TEXT NOT NULL,
    from_step INTEGER NOT NULL,
    to_step INTEGER NOT NULL,
    actor TEXT NOT NULL,
    reason TEXT NOT NULL,
    snapshot TEXT NOT NULL,
    PRIMARY KEY (rollout_id, seq)
);

CREATE TABLE rollout_signals (
    rollout_id TEXT NOT NULL,
    step INTEGER NOT NULL,
    arm TEXT NOT NULL,
    requests INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    successes INTEGER NOT NULL,
    cost_success TEXT NOT NULL,
    cost_total TEXT NOT NULL,
    quality_n INTEGER NOT NULL,
    quality_sum REAL NOT NULL,
    quality_sumsq REAL NOT NULL,
    dropped INTEGER NOT NULL,
    PRIMARY KEY (rollout_id, step, arm)
);

CREATE TABLE rollout_histograms (
    rollout_id TEXT NOT NULL,
    step INTEGER NOT NULL,
    arm TEXT NOT NULL,
    metric TEXT NOT NULL,
    bucket INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (rollout_id, step, arm, metric, bucket)
);

CREATE TABLE rollout_feedback (
    request_id TEXT NOT NULL,
    at REAL NOT NULL,
    score REAL NOT NULL,
    comment TEXT NOT NULL,
    rollout_id TEXT,
    arm TEXT
);
CREATE INDEX rollout_feedback_request ON rollout_feedback (request_id);
CREATE INDEX rollout_feedback_rollout ON rollout_feedback (rollout_id, at);
