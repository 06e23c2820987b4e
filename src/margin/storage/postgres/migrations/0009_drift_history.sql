-- Quality-drift history (docs/evals.md, "Production samples"): every scheduled re-evaluation of a
-- model group's stable deployment on its production sample, with the score's confidence interval, the
-- baseline it was compared with and whether the drift alert fired. The runs of a baseline window are
-- marked (in_baseline) so a restarted gateway keeps comparing against them; pruning keeps them.

CREATE TABLE drift_runs (
    run_id TEXT PRIMARY KEY,
    model_group TEXT NOT NULL,
    deployment TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    items INTEGER NOT NULL,
    score DOUBLE PRECISION,
    ci_low DOUBLE PRECISION,
    ci_high DOUBLE PRECISION,
    baseline DOUBLE PRECISION,
    baseline_runs INTEGER NOT NULL,
    baseline_from DOUBLE PRECISION,
    baseline_to DOUBLE PRECISION,
    in_baseline BOOLEAN NOT NULL,
    drift_margin DOUBLE PRECISION NOT NULL,
    drifted BOOLEAN NOT NULL
);
CREATE INDEX drift_runs_by_group ON drift_runs (model_group, at);
CREATE INDEX drift_runs_baseline ON drift_runs (model_group, deployment, in_baseline, at);
