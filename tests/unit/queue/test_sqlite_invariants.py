"""The embedded queue's bookkeeping (lanes, key heads, counters) stays true under random traffic.

The contract tests check behaviour case by case; this drives the writer's
functions directly with seeded random operations and checks, after every one,
that the derived state matches the calls themselves.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from wuzhao.errors import LeaseLost
from wuzhao.queue.api import AsyncCall, Attempt, Lease
from wuzhao.queue.sqlite import calls, leases
from wuzhao.queue.sqlite.schema import SCHEMA, UNFINISHED


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(tmp_path / "queue.db", isolation_level=None)
    connection.executescript(SCHEMA)
    yield connection
    connection.close()


def check_invariants(db: sqlite3.Connection) -> None:
    counted = {
        (ns, fn): (ready, unfinished)
        for ns, fn, ready, unfinished in db.execute(
            "SELECT namespace, function, ready, unfinished FROM lanes"
        )
        if ready or unfinished
    }
    actual = {
        (ns, fn): (ready, unfinished)
        for ns, fn, ready, unfinished in db.execute(
            "SELECT namespace, function, SUM(lane = 2), SUM(status IN ('queued', 'running', 'failed'))"
            " FROM calls GROUP BY namespace, function"
        )
        if ready or unfinished
    }
    assert counted == actual
    assert (
        db.execute("SELECT COUNT(*) FROM calls").fetchone()
        == db.execute("SELECT COUNT(*) FROM events").fetchone()
    )

    # A lease not acked yet (running, or given back by recover) is the only one with leased_at;
    # every attempt, a lost lease's too, is counted once.
    for seq, status, leased_at, made, attempts in db.execute(
        "SELECT seq, status, leased_at, n_attempts, json_array_length(COALESCE(attempts, '[]')) FROM calls"
    ):
        if status == "running":
            assert leased_at is not None, seq
        elif status != "queued":
            assert leased_at is None, seq
        assert made == attempts, seq

    rows = db.execute(
        "SELECT seq, namespace, function, ordering_key, status, active, lane, hold_key, token FROM calls"
    ).fetchall()
    heads = {(ns, fn, key): head for ns, fn, key, head in db.execute("SELECT * FROM keys")}
    by_key: dict[tuple[str, str, str], list[tuple[int, str, int, int]]] = {}
    for seq, ns, fn, key, status, active, lane, hold, token in rows:
        assert active == (status in UNFINISHED or bool(hold)), seq
        assert (status == "running") == (token is not None), seq
        if status in ("succeeded", "dead"):
            assert lane == 0, seq
        elif status == "running":
            assert lane in (1, 2), seq
        if key is None:
            assert status == "running" or status not in UNFINISHED or lane in (1, 2), seq
            assert not hold, seq
        elif active:
            by_key.setdefault((ns, fn, key), []).append((seq, status, lane, hold))
    assert set(heads) == set(by_key)
    for ident, members in by_key.items():
        head = heads[ident]
        running = [seq for seq, status, _, _ in members if status == "running"]
        assert running in ([], [head]), ident  # one at a time, and it is the head
        if not running:
            assert head == min(seq for seq, *_ in members), ident
        for seq, status, lane, _ in members:
            if seq != head:
                assert lane == 0, (ident, seq)
            elif status in ("queued", "failed"):
                assert lane in (1, 2), (ident, seq)


@pytest.mark.parametrize("seed", range(6))
def test_random_traffic_keeps_the_bookkeeping_true(db: sqlite3.Connection, seed: int) -> None:
    rng = random.Random(seed)
    now = 1000.0
    held: list[Lease] = []
    made = 0
    for _ in range(600):
        now += rng.choice([0.0, 0.5, 3.0])
        db.execute("BEGIN")
        op = rng.random()
        if op < 0.35:
            made += 1
            key = rng.choice([None, "a", "b", "c"])
            call = AsyncCall(
                f"c{made}", "ns", rng.choice(["f", "g"]), b"{}", now, ordering_key=key, lease_s=5.0
            )
            calls.enqueue(db, call)
        elif op < 0.55:
            exclude = rng.choice([set(), {("ns", "f")}])
            retries = rng.choice([set(), {("ns", "g")}])
            held += leases.lease(db, now, rng.randint(1, 4), rng.choice(["w1", "w2"]), exclude, retries)
        elif op < 0.8 and held:
            lease = held.pop(rng.randrange(len(held)))
            attempt = Attempt(lease.attempts + 1, now, 1.0, "Timeout", {"code": "Timeout"})
            try:
                match rng.randrange(4):
                    case 0:
                        leases.complete(db, lease.token, attempt, b"1", now)
                    case 1:
                        leases.retry(db, lease.token, attempt, now + rng.choice([0.0, 2.0]), now)
                    case 2:
                        leases.postpone(db, lease.token, now + 1.0, now)
                    case _:
                        leases.dead_letter(
                            db, lease.token, rng.choice([attempt, None]), rng.random() < 0.5, now
                        )
            except LeaseLost:
                pass
        elif op < 0.9:
            dead = [row[0] for row in db.execute("SELECT id FROM calls WHERE status = 'dead'")]
            if dead:
                chosen = rng.choice(dead)
                function = db.execute("SELECT function FROM calls WHERE id = ?", (chosen,)).fetchone()[0]
                if rng.random() < 0.6:
                    assert calls.redrive(db, "ns", function, chosen, now)
                else:
                    assert calls.delete_dead(db, "ns", function, chosen)
        elif op < 0.95:
            leases.recover(db, rng.choice(["w1", "w2"]), now)
        else:
            calls.purge_calls(db, now + 1)
            calls.purge_keys(db, now + 1)
        db.execute("COMMIT")
        check_invariants(db)
