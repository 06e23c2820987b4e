-- The batch tier (docs/batch.md): uploaded files (their bytes live in the blob store), batches, where
-- each line of a batch sits in its input file and, once it ran, its result (written once), and the
-- chunks of lines that workers lease. Money is exact decimal text.

CREATE TABLE batch_files (
    file_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    purpose TEXT NOT NULL,
    filename TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    lines INTEGER NOT NULL,
    created_at REAL NOT NULL,
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
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    principal TEXT NOT NULL,
    metadata TEXT,
    ending TEXT,
    in_progress_at REAL,
    finalizing_at REAL,
    completed_at REAL,
    failed_at REAL,
    expired_at REAL,
    cancelling_at REAL,
    cancelled_at REAL,
    output_file_id TEXT,
    error_file_id TEXT,
    errors TEXT,
    total INTEGER NOT NULL DEFAULT 0,
    completed INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    cost TEXT NOT NULL DEFAULT '0',
    paused TEXT,
    paused_until REAL,
    lease_owner TEXT,
    lease_until REAL
);
CREATE INDEX batches_by_owner ON batches (owner, created_at);
CREATE INDEX batches_by_status ON batches (status);

CREATE TABLE batch_lines (
    batch_id TEXT NOT NULL,
    line_no INTEGER NOT NULL,
    chunk_no INTEGER NOT NULL DEFAULT 0,
    byte_offset INTEGER NOT NULL,
    byte_length INTEGER NOT NULL,
    custom_id TEXT NOT NULL,
    outcome TEXT,
    result TEXT,
    request_id TEXT,
    finished_at REAL,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    cost TEXT NOT NULL DEFAULT '0',
    PRIMARY KEY (batch_id, line_no)
);
CREATE INDEX batch_lines_by_chunk ON batch_lines (batch_id, chunk_no, line_no);

CREATE TABLE batch_chunks (
    batch_id TEXT NOT NULL,
    chunk_no INTEGER NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until REAL,
    created_at REAL NOT NULL,
    PRIMARY KEY (batch_id, chunk_no)
);
CREATE INDEX batch_chunks_open ON batch_chunks (done, created_at, batch_id, chunk_no);
