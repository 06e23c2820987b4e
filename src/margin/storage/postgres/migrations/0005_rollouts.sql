-- Rollouts (docs/rollouts.md): a candidate deployment replacing a model group's stable one through
-- gated, shadow and canary steps. One live rollout per group (the partial unique index); every change
-- is a compare-and-set on `version` and leaves one audited transition row. Signals are per-arm
-- windows (one row per rollout, step and arm) that replicas add to; money is NUMERIC.

CREATE TABLE rollouts (
    rollout_id TEXT PRIMARY KEY,
    model_group TEXT NOT NULL,
    stable TEXT NOT NULL,
    candidate TEXT NOT NULL,
    state TEXT NOT NULL,
    step INTEGER NOT NULL,
    paused BOOLEAN NOT NULL,
    plan TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    stage_started_at DOUBLE PRECISION NOT NULL,
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
    at DOUBLE PRECISION NOT NULL,
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
    requests BIGINT NOT NULL,
    errors BIGINT NOT NULL,
    successes BIGINT NOT NULL,
    cost_success NUMERIC(20,12) NOT NULL,
    cost_total NUMERIC(20,12) NOT NULL,
    quality_n BIGINT NOT NULL,
    quality_sum DOUBLE PRECISION NOT NULL,
    quality_sumsq DOUBLE PRECISION NOT NULL,
    dropped BIGINT NOT NULL,
    PRIMARY KEY (rollout_id, step, arm)
);

CREATE TABLE rollout_histograms (
    rollout_id TEXT NOT NULL,
    step INTEGER NOT NULL,
    arm TEXT NOT NULL,
    metric TEXT NOT NULL,
    bucket INTEGER NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (rollout_id, step, arm, metric, bucket)
);

CREATE TABLE rollout_feedback (
    request_id TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    score DOUBLE PRECISION NOT NULL,
    comment TEXT NOT NULL,
    rollout_id TEXT,
    arm TEXT
);
CREATE INDEX rollout_feedback_request ON rollout_feedback (request_id);
CREATE INDEX rollout_feedback_rollout ON rollout_feedback (rollout_id, at);
