-- The response cache (cache.backend: sqlite), in its own file (cache.path, default {data_dir}/cache.db).
-- Releases before named cache migrations created these same tables on open: IF NOT EXISTS lets such a
-- file upgrade in place with its entries kept.

-- One row per cached answer; LRU order by last_used (written in batches, not per hit).
CREATE TABLE IF NOT EXISTS cache_entries (
    key TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    model TEXT NOT NULL,
    tags TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    last_used REAL NOT NULL,
    size INTEGER NOT NULL,
    payload BLOB NOT NULL
);

CREATE INDEX IF NOT EXISTS cache_entries_lru ON cache_entries (last_used);
CREATE INDEX IF NOT EXISTS cache_entries_expiry ON cache_entries (expires_at);
CREATE INDEX IF NOT EXISTS cache_entries_tenant ON cache_entries (tenant);
CREATE INDEX IF NOT EXISTS cache_entries_model ON cache_entries (model);

-- The question's vector of a semantic entry; dies with its entry (foreign_keys=ON).
CREATE TABLE IF NOT EXISTS cache_vectors (
    key TEXT PRIMARY KEY REFERENCES cache_entries (key) ON DELETE CASCADE,
    partition TEXT NOT NULL,
    text TEXT NOT NULL,
    vector BLOB NOT NULL
);

CREATE INDEX IF NOT EXISTS cache_vectors_partition ON cache_vectors (partition);

-- Invalidation by tag: one row per (tag, entry).
CREATE TABLE IF NOT EXISTS cache_tags (
    tag TEXT NOT NULL,
    key TEXT NOT NULL REFERENCES cache_entries (key) ON DELETE CASCADE,
    PRIMARY KEY (tag, key)
);

CREATE INDEX IF NOT EXISTS cache_tags_key ON cache_tags (key);
