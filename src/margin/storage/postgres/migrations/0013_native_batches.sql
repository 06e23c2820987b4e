-- `native` batches (docs/batch.md): the deployment whose provider's own Batch API runs the batch, and
-- that provider's batch id once it was submitted (NULL: a `local` batch, or not submitted yet).

ALTER TABLE batches ADD COLUMN native_deployment TEXT;
ALTER TABLE batches ADD COLUMN native_id TEXT;
