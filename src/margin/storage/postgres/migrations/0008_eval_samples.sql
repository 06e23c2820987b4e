-- The rolling production sample (docs/evals.md, "Production samples"): a share of each model group's
-- live requests with their answers, PII redacted before they are written. Bounded per group by
-- count and age (the writer prunes).

CREATE TABLE eval_samples (
    sample_id TEXT PRIMARY KEY,
    model_group TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    request_id TEXT NOT NULL,
    deployment TEXT NOT NULL,
    messages TEXT NOT NULL,
    answer TEXT NOT NULL,
    redactions TEXT NOT NULL
);
CREATE INDEX eval_samples_by_group ON eval_samples (model_group, at);
