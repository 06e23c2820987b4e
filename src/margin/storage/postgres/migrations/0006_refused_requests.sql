-- Requests margin's own limits refused before any upstream call (one ledger row each, status
-- `refused`, cost 0): counted per rollup cell by what refused them. 0 for cells written before.

ALTER TABLE ledger_rollup ADD COLUMN refused_budget BIGINT NOT NULL DEFAULT 0;
ALTER TABLE ledger_rollup ADD COLUMN refused_rate_limit BIGINT NOT NULL DEFAULT 0;
