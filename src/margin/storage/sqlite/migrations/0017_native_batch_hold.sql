-- `native` batches (docs/batch.md, "budgets"): the budget reservation taken before the batch went to
-- the provider (the counters charged with its worst case, JSON), and whether it was settled to the
-- batch's billed cost. NULL: a `local` batch (its lines reserve one by one).

ALTER TABLE batches ADD COLUMN native_hold TEXT;
