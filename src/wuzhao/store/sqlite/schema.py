"""The SQLite schema of the embedded store (``CREATE ... IF NOT EXISTS``: applied at every open)."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS functions (
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    config BLOB NOT NULL,
    code_sha256 TEXT NOT NULL,
    code_size INTEGER NOT NULL,
    revision INTEGER NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (namespace, name)
);
CREATE TABLE IF NOT EXISTS versions (
    namespace TEXT NOT NULL,
    function TEXT NOT NULL,
    version INTEGER NOT NULL,
    config BLOB NOT NULL,
    code_sha256 TEXT NOT NULL,
    code_size INTEGER NOT NULL,
    description TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (namespace, function, version)
);
CREATE TABLE IF NOT EXISTS aliases (
    namespace TEXT NOT NULL,
    function TEXT NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    additional_version INTEGER,
    additional_weight REAL NOT NULL,
    description TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (namespace, function, name)
);
CREATE TABLE IF NOT EXISTS namespaces (
    name TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    max_instances INTEGER,
    max_memory_mb INTEGER
);
CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL,
    namespace TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at REAL NOT NULL,
    description TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS layers (
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    code_sha256 TEXT NOT NULL,
    code_size INTEGER NOT NULL,
    description TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (namespace, name, version)
);
CREATE TABLE IF NOT EXISTS secrets (
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    ciphertext BLOB NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (namespace, name)
);
-- The highest number ever given per (kind, namespace, name): a deleted version or
-- layer version never frees its number, so "lib:2" always means the same code.
CREATE TABLE IF NOT EXISTS numbering (
    kind TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    last INTEGER NOT NULL,
    PRIMARY KEY (kind, namespace, name)
);
-- A trigger's spec is its JSON (a tagged union on "type"); function is kept apart to
-- delete a function's triggers with it. last_tick: the scheduler's last fired tick.
CREATE TABLE IF NOT EXISTS triggers (
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    function TEXT NOT NULL,
    spec BLOB NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    last_tick INTEGER,
    PRIMARY KEY (namespace, name)
);
CREATE INDEX IF NOT EXISTS triggers_by_function ON triggers (namespace, function);
CREATE TABLE IF NOT EXISTS invocations (
    id TEXT PRIMARY KEY,
    namespace TEXT NOT NULL,
    function TEXT NOT NULL,
    revision INTEGER NOT NULL,
    status TEXT NOT NULL,
    started_at REAL NOT NULL,
    duration_ms REAL NOT NULL,
    cold_start INTEGER NOT NULL,
    init_duration_ms REAL,
    error BLOB,
    version TEXT NOT NULL DEFAULT '$LATEST'
);
CREATE TABLE IF NOT EXISTS logs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    timestamp REAL NOT NULL,
    namespace TEXT NOT NULL,
    function TEXT NOT NULL,
    invocation_id TEXT,
    stream TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS logs_by_function ON logs (namespace, function, seq);
CREATE INDEX IF NOT EXISTS logs_by_function_time ON logs (namespace, function, timestamp);
CREATE INDEX IF NOT EXISTS logs_by_invocation ON logs (invocation_id, seq);
"""
