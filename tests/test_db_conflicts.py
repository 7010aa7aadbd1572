"""shared.platform.db.retry_conflicts against a real Postgres deadlock: one side is aborted by the
server and runs again, and the end state counts each piece of work exactly once."""

from __future__ import annotations

import threading

import psycopg
import pytest

from shared.platform.db import retry_conflicts


@pytest.fixture
def counters_table(stack):
    with psycopg.connect(stack.database.owner_dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS conflict_probe")
        conn.execute("CREATE TABLE conflict_probe (id int PRIMARY KEY, hits int NOT NULL)")
        conn.execute("INSERT INTO conflict_probe VALUES (1, 0), (2, 0)")
    yield stack.database.owner_dsn
    with psycopg.connect(stack.database.owner_dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE conflict_probe")


def test_a_deadlocked_transaction_is_retried_once_and_counted_once(counters_table):
    both_hold_their_first_row = threading.Barrier(2, timeout=10)
    attempts = {"forward": 0, "backward": 0}
    errors: list[BaseException] = []

    def worker(name: str, order: tuple[int, int]) -> None:
        with psycopg.connect(counters_table, autocommit=True) as conn:
            conn.execute("SET deadlock_timeout = '100ms'")

            def work() -> None:
                attempts[name] += 1
                with conn.transaction():
                    conn.execute("UPDATE conflict_probe SET hits = hits + 1 WHERE id = %s",
                                 (order[0],))
                    if attempts[name] == 1:
                        both_hold_their_first_row.wait()
                    conn.execute("UPDATE conflict_probe SET hits = hits + 1 WHERE id = %s",
                                 (order[1],))

            try:
                retry_conflicts(work)
            except BaseException as exc:  # reported below, not swallowed
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=("forward", (1, 2))),
               threading.Thread(target=worker, args=("backward", (2, 1)))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert sorted(attempts.values()) == [1, 2]  # Postgres aborted exactly one side, once
    with psycopg.connect(counters_table) as conn:
        hits = dict(conn.execute("SELECT id, hits FROM conflict_probe").fetchall())
    assert hits == {1: 2, 2: 2}  # the aborted attempt left nothing behind


def test_other_errors_are_not_retried():
    calls = []

    def work() -> None:
        calls.append(1)
        raise psycopg.errors.UniqueViolation("duplicate")

    with pytest.raises(psycopg.errors.UniqueViolation):
        retry_conflicts(work)
    assert calls == [1]
