"""Per-key order (guarantee 4): which call of an ordering key may be leased.

The ``keys`` table names, for each key with an active call (unfinished, or dead
and holding the key), the call the key waits on: its *head*. Only the head can
be in a lane; the others of the key sit in lane 0 and are never looked at by
``lease``. Both functions run inside the writer's transaction.
"""

from __future__ import annotations

import sqlite3

_OLDEST = (
    "SELECT seq FROM calls WHERE namespace = ? AND function = ? AND ordering_key = ?"
    " AND active = 1 AND ordering_key IS NOT NULL ORDER BY seq LIMIT 1"
)


def is_taken(db: sqlite3.Connection, namespace: str, function: str, key: str) -> bool:
    """Whether a new call of ``key`` must wait: the key has an active call already."""
    row = db.execute(
        "SELECT 1 FROM keys WHERE namespace = ? AND function = ? AND ordering_key = ?",
        (namespace, function, key),
    ).fetchone()
    return row is not None


def take(db: sqlite3.Connection, namespace: str, function: str, key: str, seq: int) -> None:
    """Make ``seq`` (a new call, in lane 1 already) the head of its free key."""
    db.execute(
        "INSERT INTO keys (namespace, function, ordering_key, head) VALUES (?, ?, ?, ?)",
        (namespace, function, key, seq),
    )


def settle(db: sqlite3.Connection, namespace: str, function: str, key: str) -> None:
    """After a call of ``key`` finished, was redriven or deleted: choose the head again.

    The head becomes the oldest active call of the key. A running head keeps the
    key until its ack, even when an older call came back (a redrive), so two
    calls of one key never run at once.
    """
    ident = (namespace, function, key)
    row = db.execute(
        "SELECT k.head, c.status, c.active FROM keys k LEFT JOIN calls c ON c.seq = k.head"
        " WHERE k.namespace = ? AND k.function = ? AND k.ordering_key = ?",
        ident,
    ).fetchone()
    current = None if row is None else int(row[0])
    if row is not None and row[1] == "running" and row[2] == 1:
        return
    oldest_row = db.execute(_OLDEST, ident).fetchone()
    if oldest_row is None:
        db.execute("DELETE FROM keys WHERE namespace = ? AND function = ? AND ordering_key = ?", ident)
        return
    oldest = int(oldest_row[0])
    if current != oldest:
        if current is not None:  # still waiting (queued or failed): back behind the older call
            db.execute(
                "UPDATE calls SET lane = 0 WHERE seq = ? AND status IN ('queued', 'failed')", (current,)
            )
        db.execute(
            "INSERT INTO keys (namespace, function, ordering_key, head) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (namespace, function, ordering_key) DO UPDATE SET head = excluded.head",
            (*ident, oldest),
        )
    # A dead head (held) stays out of the lanes until it is redriven.
    db.execute(
        "UPDATE calls SET lane = 1, wake_at = due_at"
        " WHERE seq = ? AND lane = 0 AND status IN ('queued', 'failed')",
        (oldest,),
    )
