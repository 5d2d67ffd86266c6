"""Calls in and out of the queue: enqueue, look-ups, dead letters, purge.

Plain functions of a connection, run by ``ConnectionThread`` (the writer for
changes, the reader for look-ups); ``SqliteQueue`` wraps them in coroutines.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from wuzhao.errors import Conflict, NotFound
from wuzhao.queue.api import IDEMPOTENCY_WINDOW_S, AsyncCall, CallState
from wuzhao.queue.sqlite import keys, rows

PURGE_CHUNK = 2000  # rows per purge transaction, so enqueues are not held back for long


def enqueue(db: sqlite3.Connection, call: AsyncCall, dead: dict[str, Any] | None = None) -> tuple[str, bool]:
    if call.idempotency_key is not None:
        first = db.execute(
            "SELECT call_id, created_at FROM idempotency WHERE namespace = ? AND function = ? AND key = ?",
            (call.namespace, call.function, call.idempotency_key),
        ).fetchone()
        if first is not None and call.enqueued_at - first[1] < IDEMPOTENCY_WINDOW_S:
            return str(first[0]), False
        db.execute(
            "INSERT OR REPLACE INTO idempotency (namespace, function, key, call_id, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (call.namespace, call.function, call.idempotency_key, call.id, call.enqueued_at),
        )
    # A dead call is inactive: it neither waits for its ordering key nor holds it (lane 0: never leased).
    key = call.ordering_key if dead is None else None
    waits = key is not None and keys.is_taken(db, call.namespace, call.function, key)
    try:
        cursor = db.execute(
            "INSERT INTO calls (id, namespace, function, qualifier, ordering_key, idempotency_key, origin,"
            " enqueued_at, lease_s, status, due_at, updated_at, lane, wake_at, active, error)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                call.id,
                call.namespace,
                call.function,
                call.qualifier,
                call.ordering_key,
                call.idempotency_key,
                rows.encode_object(call.origin),
                call.enqueued_at,
                call.lease_s,
                "queued" if dead is None else "dead",
                call.enqueued_at,
                call.enqueued_at,
                0 if waits or dead is not None else 1,
                call.enqueued_at,
                int(dead is None),
                rows.encode_object(dead),
            ),
        )
    except sqlite3.IntegrityError:
        raise Conflict(f"a call with id {call.id!r} exists already", field="id") from None
    seq = cursor.lastrowid
    assert seq is not None
    db.execute("INSERT INTO events (seq, event) VALUES (?, ?)", (seq, call.event))
    if key is not None and not waits:
        keys.take(db, call.namespace, call.function, key, seq)
    return call.id, True


def get(db: sqlite3.Connection, call_id: str) -> CallState | None:
    row = db.execute(f"SELECT {rows.STATE} FROM {rows.FROM} WHERE c.id = ?", (call_id,)).fetchone()
    return None if row is None else rows.state_from(row)


def dead_letters(
    db: sqlite3.Connection, namespace: str, function: str, limit: int, after: str | None
) -> list[CallState]:
    position = 0
    if after is not None:
        found = db.execute("SELECT seq FROM calls WHERE id = ?", (after,)).fetchone()
        if found is None:  # deleted since that page: its place in the order is gone with it
            raise NotFound(f"no call {after!r} to page after", field="after")
        position = int(found[0])
    found_rows = db.execute(
        f"SELECT {rows.STATE} FROM {rows.FROM}"
        " WHERE c.status = 'dead' AND c.namespace = ? AND c.function = ? AND c.seq > ?"
        " ORDER BY c.seq LIMIT ?",
        (namespace, function, position, max(0, limit)),
    ).fetchall()
    return [rows.state_from(row) for row in found_rows]


def redrive(db: sqlite3.Connection, namespace: str, function: str, call_id: str, now: float) -> bool:
    row = db.execute(
        "UPDATE calls SET status = 'queued', active = 1, hold_key = 0, retries_used = 0, due_at = ?,"
        " updated_at = ?, lane = CASE WHEN ordering_key IS NULL THEN 1 ELSE 0 END, wake_at = ?"
        " WHERE id = ? AND namespace = ? AND function = ? AND status = 'dead' RETURNING ordering_key",
        (now, now, now, call_id, namespace, function),
    ).fetchone()
    if row is None:
        return False
    if row[0] is not None:
        keys.settle(db, namespace, function, row[0])
    return True


def delete_dead(db: sqlite3.Connection, namespace: str, function: str, call_id: str) -> bool:
    row = db.execute(
        "DELETE FROM calls WHERE id = ? AND namespace = ? AND function = ? AND status = 'dead'"
        " RETURNING ordering_key, hold_key",
        (call_id, namespace, function),
    ).fetchone()
    if row is None:
        return False
    if row[0] is not None and row[1]:
        keys.settle(db, namespace, function, row[0])
    return True


def depth(db: sqlite3.Connection) -> dict[tuple[str, str], int]:
    found = db.execute("SELECT namespace, function, unfinished FROM lanes WHERE unfinished > 0").fetchall()
    return {(namespace, function): int(count) for namespace, function, count in found}


def next_due(db: sqlite3.Connection) -> float | None:
    # Lane 1 holds due times and lease deadlines still ahead, lane 2 those already passed.
    found = [
        db.execute("SELECT MIN(wake_at) FROM calls WHERE lane > 0 AND lane = ?", (lane,)).fetchone()[0]
        for lane in (1, 2)
    ]
    times = [t for t in found if t is not None]
    return min(times) if times else None


def purge_calls(db: sqlite3.Connection, finished_before: float) -> int:
    """Up to ``PURGE_CHUNK`` succeeded calls finished before then; the caller repeats until fewer."""
    cursor = db.execute(
        "DELETE FROM calls WHERE seq IN (SELECT seq FROM calls"
        " WHERE status = 'succeeded' AND updated_at < ? LIMIT ?)",
        (finished_before, PURGE_CHUNK),
    )
    return int(cursor.rowcount)


def purge_keys(db: sqlite3.Connection, finished_before: float) -> None:
    # A key is forgotten only once its window is over, even if its call went before:
    # forgetting it earlier would let a late repeat run the call twice (guarantee 5).
    db.execute("DELETE FROM idempotency WHERE created_at < ?", (finished_before - IDEMPOTENCY_WINDOW_S,))
    db.execute("DELETE FROM lanes WHERE ready = 0 AND unfinished = 0")
