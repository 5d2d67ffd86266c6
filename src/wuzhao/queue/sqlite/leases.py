"""Leases and their acks: the writer-side functions behind ``lease``, ``recover`` and the acks.

``lease`` first moves calls whose time came into lane 2 (``schema``), then asks
each function with leasable calls (``lanes.ready``) for its oldest ones through
``calls_ready`` (or ``calls_ready_first`` when its retries must wait), and
keeps the ``limit`` oldest of all. The cost is one index step per call that
became due, plus one short index range per function with work: never a walk
over calls that cannot be handed out (waiting behind their key, excluded, not
yet due).

A token is ``<seq>.<random>``: the seq finds the row by its primary key, the
random part (kept in the row) proves the lease is still this one.

A lease sets ``leased_at`` and every ack clears it; ``recover`` and an expired
deadline do not. So a lease that finds it set knows the lease before was lost,
and records that one as a ``LeaseExpired`` attempt before handing the call out
(guarantee 2): a call that kills its worker at every attempt runs out of
retries like one that fails.
"""

from __future__ import annotations

import heapq
import secrets
import sqlite3
from collections.abc import Collection
from typing import Any

from wuzhao.errors import LeaseExpired, LeaseLost
from wuzhao.queue.api import LEASE_EXPIRED, Attempt, Lease
from wuzhao.queue.sqlite import keys, rows

_READY = (
    "SELECT seq FROM calls WHERE lane = 2 AND namespace = ? AND function = ? AND wake_at <= ?"
    " ORDER BY seq LIMIT ?"
)
_READY_FIRST = (
    "SELECT seq FROM calls WHERE lane = 2 AND n_attempts = 0 AND namespace = ? AND function = ?"
    " AND wake_at <= ? ORDER BY seq LIMIT ?"
)
# What an ack clears: the lease, and leased_at with it (it ended as it should: the next lease
# owes it nothing).
_ACKED = "token = NULL, consumer = NULL, deadline = NULL, leased_at = NULL"


def lease(
    db: sqlite3.Connection,
    now: float,
    limit: int,
    consumer: str,
    exclude: Collection[tuple[str, str]],
    exclude_retries: Collection[tuple[str, str]],
) -> list[Lease]:
    if limit <= 0:
        return []
    db.execute("UPDATE calls SET lane = 2 WHERE lane > 0 AND lane = 1 AND wake_at <= ?", (now,))
    skip, first_only = set(exclude), set(exclude_retries)
    per_function = []
    for namespace, function in db.execute("SELECT namespace, function FROM lanes WHERE ready > 0").fetchall():
        if (namespace, function) in skip:
            continue
        query = _READY_FIRST if (namespace, function) in first_only else _READY
        per_function.append([seq for (seq,) in db.execute(query, (namespace, function, now, limit))])
    leases: list[Lease] = []
    for seq in heapq.merge(*per_function):
        if len(leases) == limit:
            break
        leases.append(_take(db, seq, now, consumer))
    return leases


def _take(db: sqlite3.Connection, seq: int, now: float, consumer: str) -> Lease:
    secret = secrets.token_urlsafe(16)
    lost = _record_lost(db, seq, now)
    # A running call sits in lane 1 until its deadline: past it, it is leasable again.
    db.execute(
        "UPDATE calls SET status = 'running', lane = 1, wake_at = ? + lease_s, deadline = ? + lease_s,"
        " token = ?, consumer = ?, updated_at = ?, deliveries = deliveries + 1, leased_at = ?"
        " WHERE seq = ?",
        (now, now, secret, consumer, now, now, seq),
    )
    row = db.execute(
        f"SELECT {rows.CALL}, c.deadline, c.retries_used, c.n_attempts, c.deliveries"
        f" FROM {rows.FROM} WHERE c.seq = ?",
        (seq,),
    ).fetchone()
    return Lease(
        call=rows.call_from(row),
        token=f"{seq}.{secret}",
        deadline=row[-4],
        retries_used=row[-3],
        attempts=row[-2],
        deliveries=row[-1],
        lost=lost,
    )


def _record_lost(db: sqlite3.Connection, seq: int, now: float) -> bool:
    """If the call's last lease ended without an ack, record it as a LeaseExpired attempt that
    counts against its retries, like a crash; whether it did."""
    status, leased_at, ended, lease_s, attempts, made = db.execute(
        "SELECT status, leased_at, deadline, lease_s, attempts, n_attempts FROM calls WHERE seq = ?", (seq,)
    ).fetchone()
    if leased_at is None:
        return False
    if status == "running":  # still running in the row: its deadline passed
        why = f"no answer within the call's lease ({lease_s:g} s): the worker running it hung or died"
    else:  # given back by recover
        why = "the process running it ended (killed or crashed) before its answer was recorded"
    error: dict[str, Any] = LeaseExpired(why).to_body()["error"]
    lost = Attempt(
        number=made + 1,
        started_at=leased_at,
        duration_ms=round(max(0.0, (ended if ended is not None else now) - leased_at) * 1000, 3),
        outcome=LEASE_EXPIRED,
        error=error,
    )
    db.execute(
        "UPDATE calls SET attempts = ?, n_attempts = n_attempts + 1, retries_used = retries_used + 1,"
        " error = ?, leased_at = NULL WHERE seq = ?",
        (rows.encode([*rows.decode_attempts(attempts), lost]), rows.encode_object(error), seq),
    )
    return True


def recover(db: sqlite3.Connection, consumer: str | None, now: float) -> int:
    """Give back the leases of ``consumer`` (None: every lease); ``queued`` and leasable at once."""
    where = "status = 'running'" + ("" if consumer is None else " AND consumer = ?")
    args = () if consumer is None else (consumer,)
    # leased_at stays: the next lease records this one as lost. The deadline becomes now, when
    # the lease ended, for that record's duration.
    given_back = db.execute(
        "UPDATE calls SET status = 'queued', lane = 2, wake_at = due_at, updated_at = ?,"
        f" token = NULL, consumer = NULL, deadline = ? WHERE {where}"
        " RETURNING namespace, function, ordering_key",
        (now, now, *args),
    ).fetchall()
    # A running call is the head of its key; settling puts an older call that came back
    # meanwhile (a redrive) before it again.
    for namespace, function, key in {row for row in given_back if row[2] is not None}:
        keys.settle(db, namespace, function, key)
    return len(given_back)


class _Leased:
    """The row a token names, checked: still running under this very lease."""

    def __init__(self, db: sqlite3.Connection, token: str) -> None:
        seq_text, _, secret = token.partition(".")
        row = None
        if seq_text.isdigit() and secret:
            row = db.execute(
                "SELECT namespace, function, ordering_key, attempts FROM calls"
                " WHERE seq = ? AND status = 'running' AND token = ?",
                (int(seq_text), secret),
            ).fetchone()
        if row is None:
            raise LeaseLost("the lease of this call expired and was taken again, or was given back")
        self.seq = int(seq_text)
        self.namespace, self.function, self.ordering_key, self._attempts = row

    def attempts_with(self, attempt: Attempt) -> bytes:
        return rows.encode([*rows.decode_attempts(self._attempts), attempt])

    def release_key(self, db: sqlite3.Connection) -> None:
        """After every ack: the call no longer runs, so an older call of its key that came back
        (a redrive) while it ran goes first now."""
        if self.ordering_key is not None:
            keys.settle(db, self.namespace, self.function, self.ordering_key)


def complete(db: sqlite3.Connection, token: str, attempt: Attempt, result: bytes | None, now: float) -> None:
    leased = _Leased(db, token)
    db.execute(
        "UPDATE calls SET status = 'succeeded', active = 0, lane = 0, attempts = ?,"
        " n_attempts = n_attempts + 1, retries_used = retries_used + 1, result = ?, error = NULL,"
        f" updated_at = ?, {_ACKED} WHERE seq = ?",
        (leased.attempts_with(attempt), result, now, leased.seq),
    )
    leased.release_key(db)


def retry(db: sqlite3.Connection, token: str, attempt: Attempt, at: float, now: float) -> None:
    leased = _Leased(db, token)
    db.execute(
        "UPDATE calls SET status = 'failed', lane = 1, due_at = ?, wake_at = ?, attempts = ?,"
        " n_attempts = n_attempts + 1, retries_used = retries_used + 1, error = ?,"
        f" updated_at = ?, {_ACKED} WHERE seq = ?",
        (at, at, leased.attempts_with(attempt), rows.encode_object(attempt.error), now, leased.seq),
    )
    leased.release_key(db)


def postpone(db: sqlite3.Connection, token: str, at: float, now: float) -> None:
    leased = _Leased(db, token)
    db.execute(
        "UPDATE calls SET status = 'queued', lane = 1, due_at = ?, wake_at = ?,"
        f" updated_at = ?, {_ACKED} WHERE seq = ?",
        (at, at, now, leased.seq),
    )
    leased.release_key(db)


def dead_letter(
    db: sqlite3.Connection,
    token: str,
    attempt: Attempt | None,
    hold_key: bool,
    now: float,
    error: dict[str, Any] | None = None,
) -> None:
    leased = _Leased(db, token)
    hold = hold_key and leased.ordering_key is not None
    why = error if error is not None else attempt.error if attempt is not None else None
    # COALESCE: with nothing to say why, the call keeps the last error it had.
    if attempt is None:
        db.execute(
            "UPDATE calls SET status = 'dead', active = ?, hold_key = ?, lane = 0,"
            f" error = COALESCE(?, error), updated_at = ?, {_ACKED} WHERE seq = ?",
            (int(hold), int(hold), rows.encode_object(why), now, leased.seq),
        )
    else:
        db.execute(
            "UPDATE calls SET status = 'dead', active = ?, hold_key = ?, lane = 0, attempts = ?,"
            " n_attempts = n_attempts + 1, retries_used = retries_used + 1, error = ?,"
            f" updated_at = ?, {_ACKED} WHERE seq = ?",
            (int(hold), int(hold), leased.attempts_with(attempt), rows.encode_object(why), now,
             leased.seq),
        )  # fmt: skip
    leased.release_key(db)
