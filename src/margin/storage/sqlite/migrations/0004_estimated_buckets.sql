-- Which usage buckets of a row hold margin's estimate rather than the upstream's report, comma-separated
-- in column order (e.g. "output" for an Anthropic stream cut before its final counts, whose input
-- figures were reported; "input_uncached,output" for a fully estimated row). Empty when every figure
-- was reported, and for rows written before this migration (their usage_source still says whether
-- the row was estimated).

ALTER TABLE ledger_attempts ADD COLUMN estimated_buckets TEXT NOT NULL DEFAULT '';
