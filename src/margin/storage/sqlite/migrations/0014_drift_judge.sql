-- A drift re-evaluation graded by the group's judge (docs/evals.md, "Production samples"): the judge's
-- outcomes over the run's answers (agreed, disagreed across the two orders, unparseable, failed or
-- not asked once the judge budget was spent), what the judge cost, and whether the run had too few
-- agreed verdicts to decide (inconclusive: no alert, not a baseline run). NULL counts: not judged.

ALTER TABLE drift_runs ADD COLUMN judge_agreed INTEGER;
ALTER TABLE drift_runs ADD COLUMN judge_disagreed INTEGER;
ALTER TABLE drift_runs ADD COLUMN judge_unparseable INTEGER;
ALTER TABLE drift_runs ADD COLUMN judge_failed INTEGER;
ALTER TABLE drift_runs ADD COLUMN judge_spent_usd TEXT;
ALTER TABLE drift_runs ADD COLUMN inconclusive INTEGER NOT NULL DEFAULT 0;
