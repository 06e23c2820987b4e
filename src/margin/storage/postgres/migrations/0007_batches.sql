-- The batch tier (docs/batch.md): uploaded files (their bytes live in the blob store), batches, where
-- each line of a batch sits in its input file and, once it ran, its result (written once), and the
-- chunks of lines that workers lease. Money is NUMERIC.

CREATE TABLE batch_files (
    file_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    purpose TEXT NOT NULL,
    filename TEXT NOT NULL,
    bytes BIGINT NOT NULL,
    lines INTEGER NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    blob TEXT NOT NULL
);
CREATE INDEX batch_files_by_owner ON batch_files (owner, created_at);

CREATE TABLE batches (
    batch_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    api TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    input_file_id TEXT NOT NULL,
    completion_window TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    principal TEXT NOT NULL,
    metadata TEXT,
    ending TEXT,
    in_progress_at DOUBLE PRECISION,
    finalizing_at DOUBLE PRECISION,
    completed_at DOUBLE PRECISION,
    failed_at DOUBLE PRECISION,
    expired_at DOUBLE PRECISION,
    cancelling_at DOUBLE PRECISION,
    cancelled_at DOUBLE PRECISION,
    output_file_id TEXT,
    error_file_id TEXT,
    errors TEXT,
    total INTEGER NOT NULL DEFAULT 0,
    completed INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    input_tokens BIGINT NOT NULL DEFAULT 0,
    output_tokens BIGINT NOT NULL DEFAULT 0,
    cost NUMERIC(20,12) NOT NULL DEFAULT 0,
    paused TEXT,
    paused_until DOUBLE PRECISION,
    lease_owner TEXT,
    lease_until DOUBLE PRECISION
);
CREATE INDEX batches_by_owner ON batches (owner, created_at);
CREATE INDEX batches_by_status ON batches (status);

CREATE TABLE batch_lines (
    batch_id TEXT NOT NULL,
    line_no INTEGER NOT NULL,
    chunk_no INTEGER NOT NULL DEFAULT 0,
    byte_offset BIGINT NOT NULL,
    byte_length INTEGER NOT NULL,
    custom_id TEXT NOT NULL,
    outcome TEXT,
    result TEXT,
    request_id TEXT,
    finished_at DOUBLE PRECISION,
    input_tokens BIGINT NOT NULL DEFAULT 0,
    output_tokens BIGINT NOT NULL DEFAULT 0,
    cost NUMERIC(20,12) NOT NULL DEFAULT 0,
    PRIMARY KEY (batch_id, line_no)
);
CREATE INDEX batch_lines_by_chunk ON batch_lines (batch_id, chunk_no, line_no);

CREATE TABLE batch_chunks (
    batch_id TEXT NOT NULL,
    chunk_no INTEGER NOT NULL,
    done BOOLEAN NOT NULL DEFAULT FALSE,
    lease_owner TEXT,
    lease_until DOUBLE PRECISION,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (batch_id, chunk_no)
);
CREATE INDEX batch_chunks_open ON batch_chunks (done, created_at, batch_id, chunk_no);
