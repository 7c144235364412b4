"""state.db: its schema is created and reset atomically, so threads and processes opening it at once never see
a table half made (a run's first commit resetting the provenance tables while a worker thread opened the
database failed a stage with "no such table: main.inputs")."""

from __future__ import annotations

import threading

from mlv.storage.workspace import statedb


def test_opening_and_resetting_at_once_never_sees_a_half_made_schema(tmp_path):
    errors: list[str] = []

    def attempt(work) -> None:
        try:
            work()
        except Exception as exc:  # noqa: BLE001 - collected, asserted below
            errors.append(repr(exc))

    for i in range(15):
        path = tmp_path / f"state-{i}.db"
        statedb.connect(path).close()

        def reset(path=path) -> None:
            db = statedb.connect(path)
            statedb.reset(db, "provenance")
            db.close()

        def open_many(path=path) -> None:
            for _ in range(5):
                statedb.connect(path).close()

        threads = [threading.Thread(target=attempt, args=(w,)) for w in (reset, open_many, reset, open_many)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors[:3]
    db = statedb.connect(tmp_path / "state-0.db")
    assert db.execute("SELECT count(*) FROM inputs").fetchone() == (0,)
