"""The SQLite schema of the embedded queue (``CREATE ... IF NOT EXISTS``: applied at every open).

A call's row carries, besides its contract status, a ``lane`` that says whether
``lease`` may look at it, so that leasing never walks past calls it cannot hand
out:

- lane 0: not leasable (finished, dead, or waiting behind an older call of its
  ordering key);
- lane 1: leasable from ``wake_at`` on (``queued``/``failed``: its due time;
  ``running``: its lease deadline, after which it may be leased again);
- lane 2: leasable now. ``lease`` moves lane-1 calls whose ``wake_at`` has
  passed to lane 2 first, through the ``calls_wake`` index, so the cost is one
  index step per call that became due, never a scan of those still waiting.

Partial indexes are used only when the query repeats the index's WHERE terms
word for word (SQLite does not reason that ``lane = 1`` implies ``lane > 0``);
the queries in this package do.
"""

SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    seq INTEGER PRIMARY KEY,          -- enqueue order (guarantee 6); a token names its call by it
    id TEXT NOT NULL UNIQUE,
    namespace TEXT NOT NULL,
    function TEXT NOT NULL,
    qualifier TEXT,
    ordering_key TEXT,
    idempotency_key TEXT,
    origin BLOB,                      -- JSON object; NULL when empty
    enqueued_at REAL NOT NULL,
    lease_s REAL NOT NULL,
    status TEXT NOT NULL,
    due_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    attempts BLOB,                    -- JSON array of Attempt; NULL before the first
    n_attempts INTEGER NOT NULL DEFAULT 0,
    retries_used INTEGER NOT NULL DEFAULT 0,
    result BLOB,
    error BLOB,                       -- JSON object
    hold_key INTEGER NOT NULL DEFAULT 0,
    active INTEGER NOT NULL DEFAULT 1, -- unfinished, or dead and holding its key: counts for key order
    lane INTEGER NOT NULL,
    wake_at REAL NOT NULL,
    token TEXT,
    consumer TEXT,
    deadline REAL,                    -- when the lease ends (ended, once recovered)
    deliveries INTEGER NOT NULL DEFAULT 0,  -- leases handed out
    leased_at REAL                    -- start of a lease not acked yet; kept by recover: that one is lost
);
-- Events live apart: a call's row is rewritten at every transition, its event never.
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    event BLOB NOT NULL
);
-- Outlives its call (a purged or deleted call still deduplicates until its window ends).
CREATE TABLE IF NOT EXISTS idempotency (
    namespace TEXT NOT NULL,
    function TEXT NOT NULL,
    key TEXT NOT NULL,
    call_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (namespace, function, key)
) WITHOUT ROWID;
-- One row per ordering key with an active call: the seq of the call the key waits on.
CREATE TABLE IF NOT EXISTS keys (
    namespace TEXT NOT NULL,
    function TEXT NOT NULL,
    ordering_key TEXT NOT NULL,
    head INTEGER NOT NULL,
    PRIMARY KEY (namespace, function, ordering_key)
) WITHOUT ROWID;
-- Per function: calls leasable now (lane 2) and unfinished calls; kept by the triggers
-- below, so lease visits only functions with work and depth() reads a handful of rows.
CREATE TABLE IF NOT EXISTS lanes (
    namespace TEXT NOT NULL,
    function TEXT NOT NULL,
    ready INTEGER NOT NULL,
    unfinished INTEGER NOT NULL,
    PRIMARY KEY (namespace, function)
) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS calls_wake ON calls (lane, wake_at) WHERE lane > 0;
CREATE INDEX IF NOT EXISTS calls_ready ON calls (namespace, function, seq, wake_at) WHERE lane = 2;
CREATE INDEX IF NOT EXISTS calls_ready_first ON calls (namespace, function, seq, wake_at)
    WHERE lane = 2 AND n_attempts = 0;
CREATE INDEX IF NOT EXISTS calls_key ON calls (namespace, function, ordering_key, seq)
    WHERE active = 1 AND ordering_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS calls_running ON calls (consumer) WHERE status = 'running';
CREATE INDEX IF NOT EXISTS calls_dead ON calls (namespace, function, seq) WHERE status = 'dead';
CREATE INDEX IF NOT EXISTS calls_succeeded ON calls (updated_at) WHERE status = 'succeeded';
CREATE INDEX IF NOT EXISTS idempotency_age ON idempotency (created_at);

CREATE TRIGGER IF NOT EXISTS calls_counted_in AFTER INSERT ON calls BEGIN
    INSERT INTO lanes (namespace, function, ready, unfinished)
    VALUES (NEW.namespace, NEW.function, NEW.lane = 2, NEW.status IN ('queued', 'running', 'failed'))
    ON CONFLICT (namespace, function) DO UPDATE
    SET ready = ready + excluded.ready, unfinished = unfinished + excluded.unfinished;
END;
CREATE TRIGGER IF NOT EXISTS calls_counted AFTER UPDATE OF lane, status ON calls
WHEN (NEW.lane = 2) != (OLD.lane = 2)
    OR (NEW.status IN ('queued', 'running', 'failed')) != (OLD.status IN ('queued', 'running', 'failed'))
BEGIN
    UPDATE lanes
    SET ready = ready + (NEW.lane = 2) - (OLD.lane = 2),
        unfinished = unfinished + (NEW.status IN ('queued', 'running', 'failed'))
                                - (OLD.status IN ('queued', 'running', 'failed'))
    WHERE namespace = NEW.namespace AND function = NEW.function;
END;
CREATE TRIGGER IF NOT EXISTS calls_counted_out AFTER DELETE ON calls BEGIN
    UPDATE lanes
    SET ready = ready - (OLD.lane = 2),
        unfinished = unfinished - (OLD.status IN ('queued', 'running', 'failed'))
    WHERE namespace = OLD.namespace AND function = OLD.function;
    DELETE FROM events WHERE seq = OLD.seq;
END;
"""

UNFINISHED = ("queued", "running", "failed")
