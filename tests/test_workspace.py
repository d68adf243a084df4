from __future__ import annotations

import os
import stat

import duckdb
import numpy as np
import pytest

import custlens
from custlens.errors import KeyMaterialError, ValidationError, WorkspaceError
from custlens.model.schema import TABLES
from custlens.workspace import check_identifier, open_workspace


def test_init_creates_layout_and_canonical_tables(tmp_path):
    ws = custlens.init(tmp_path / "w")
    root = ws.root
    assert (root / "custlens.toml").exists()
    assert (root / "archive").is_dir() and (root / "reports").is_dir()
    key = root / "keys" / "custlens.key"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert len(ws.key) == 32
    ws.close()
    # any DuckDB client sees the canonical tables by name
    con = duckdb.connect(str(root / "warehouse.duckdb"), read_only=True)
    names = {r[0] for r in con.execute("SHOW TABLES").fetchall()}
    con.close()
    assert set(TABLES) <= names


def test_open_non_workspace_is_clear_error(tmp_path):
    with pytest.raises(WorkspaceError) as e:
        custlens.open(tmp_path)
    assert "custlens init" in str(e.value)


def test_open_finds_workspace_from_env(tmp_path, monkeypatch):
    custlens.init(tmp_path / "w").close()
    monkeypatch.setenv("CUSTLENS_WORKSPACE", str(tmp_path / "w"))
    monkeypatch.chdir(tmp_path)
    ws = custlens.open()
    assert ws.root == (tmp_path / "w").resolve()
    ws.close()


def test_missing_key_is_clear_error(tmp_path):
    ws = custlens.init(tmp_path / "w")
    ws.close()
    (tmp_path / "w" / "keys" / "custlens.key").unlink()
    ws = custlens.open(tmp_path / "w")
    with pytest.raises(KeyMaterialError):
        _ = ws.key


def test_second_writer_gets_lock_message(tmp_path):
    import subprocess
    import sys

    custlens.init(tmp_path / "w").close()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import duckdb,sys,time; c=duckdb.connect(sys.argv[1]); print('ok', flush=True); time.sleep(30)"),
        str(tmp_path / "w" / "warehouse.duckdb")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ok"
        ws = custlens.open(tmp_path / "w")
        with pytest.raises(WorkspaceError) as e:
            ws.list_tables()
        assert "another process" in str(e.value)
    finally:
        holder.kill()


@pytest.mark.parametrize("bad", ['x"; DROP TABLE customers; --', "a`b", "", " lead", "a\x00b"])
def test_identifier_injection_rejected(bad):
    with pytest.raises(ValidationError):
        check_identifier(bad)


def test_optimize_sorts_user_keyed_tables_and_keeps_rows(ws):
    from datetime import datetime

    from tests.conftest import insert_rows

    insert_rows(ws, "orders", [{"order_id": f"o{i}", "user_id": f"U{(7 * i) % 10}", "amount": float(i),
                                "order_time": datetime(2024, 1, 1 + i), "status": "paid"} for i in range(10)])
    before = ws.duck.execute("SELECT * FROM orders ORDER BY order_id").fetchall()
    assert ws.optimize() == {"orders": 10, "events": 0, "tickets": 0, "feedback": 0, "customers": 0}
    stored = [r[0] for r in ws.duck.execute("SELECT user_id FROM orders").fetchall()]
    assert stored == sorted(stored)
    assert ws.duck.execute("SELECT * FROM orders ORDER BY order_id").fetchall() == before


@pytest.mark.parametrize("rows_per_sort", [1, 7, 1000])
def test_optimize_in_user_id_ranges_keeps_every_row_in_order(ws, rows_per_sort):
    """Tables larger than rows_per_sort are sorted range by range; the result is the same as one sort."""
    from datetime import datetime

    from tests.conftest import insert_rows

    rng = np.random.default_rng(rows_per_sort)
    users = [None if u == 0 else f"U{u:03d}" for u in rng.integers(0, 40, 300)]
    insert_rows(ws, "events", [{"event_id": f"e{i}", "user_id": u, "anonymous_id": None if u else f"a{i}",
                                "event": "view", "event_time": datetime(2024, 1, 1 + int(rng.integers(0, 28)),
                                                                        int(rng.integers(0, 24)))}
                               for i, u in enumerate(users)])
    before = ws.duck.execute("SELECT * FROM events ORDER BY event_id").fetchall()
    assert ws.optimize(("events",), rows_per_sort=rows_per_sort) == {"events": 300}
    stored = ws.duck.execute("SELECT user_id, event_time FROM events").fetchall()
    keyed = [r for r in stored if r[0] is not None]
    assert keyed == sorted(keyed)  # by user, then time
    assert all(r[0] is None for r in stored[len(keyed):])  # rows without a user id last, none lost
    assert ws.duck.execute("SELECT * FROM events ORDER BY event_id").fetchall() == before
    assert [r[0] for r in ws.duck.execute("SHOW TABLES").fetchall()].count("_optimize_events") == 0


@pytest.mark.parametrize("rows_per_sort", [5, 1000])
def test_optimize_indexes_one_row_per_customer_tables_and_later_writes_keep_working(ws, rows_per_sort):
    """customers, tickets and feedback get an index on user_id (both rewrite paths); rows appended after it,
    a column added by a later load and deletes (erasure) still work, and lookups agree with a scan."""
    from datetime import datetime

    from custlens.workspace import POINT_INDEXED
    from tests.conftest import insert_rows

    insert_rows(ws, "tickets", [{"ticket_id": f"t{i}", "user_id": f"U{(7 * i) % 12:02d}",
                                 "created_time": datetime(2024, 1, 1 + i)} for i in range(12)])
    insert_rows(ws, "customers", [{"user_id": f"U{i:02d}", "name": f"n{i}"} for i in range(12)])
    ws.optimize(rows_per_sort=rows_per_sort)
    idx = {r[0] for r in ws.duck.execute("SELECT table_name FROM duckdb_indexes()").fetchall()}
    assert set(POINT_INDEXED) <= idx and "events" not in idx
    insert_rows(ws, "tickets", [{"ticket_id": "t99", "user_id": "U03", "created_time": datetime(2024, 3, 1)}])
    ws.ensure_table("customers", {"vip_level": "string"})  # a later load with an extra attribute
    ws.duck.execute("DELETE FROM tickets WHERE user_id = 'U05'")
    for uid in ("U03", "U05", "U11", "nobody"):
        got = sorted(r[0] for r in ws.duck.execute("SELECT ticket_id FROM tickets WHERE user_id = ?", [uid]).fetchall())
        scan = sorted(r[0] for r in ws.duck.execute("SELECT ticket_id FROM tickets WHERE user_id || '' = ?",
                                                    [uid]).fetchall())
        assert got == scan
    assert len(ws.duck.execute("SELECT * FROM tickets WHERE user_id = 'U03'").fetchall()) == 2
    assert ws.duck.execute("SELECT count(*) FROM customers WHERE user_id = 'U04'").fetchone()[0] == 1
    assert ws.optimize(("tickets",), rows_per_sort=rows_per_sort) == {"tickets": 12}  # 12 + 1 - 1, rewritten again


def _limit_bytes(con) -> float:
    value, unit = con.execute("SELECT current_setting('memory_limit')").fetchone()[0].split()
    return float(value) * {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}[unit]


def test_memory_limit_defaults_to_half_of_ram_and_config_wins(tmp_path):
    with duckdb.connect(":memory:") as fresh:
        duck_default = _limit_bytes(fresh)  # DuckDB's own default: 80% of the memory it sees
    ws = custlens.init(tmp_path / "ws")
    try:
        assert _limit_bytes(ws.duck) == pytest.approx(duck_default * 0.625, rel=0.01)
    finally:
        ws.close()
    again = open_workspace(tmp_path / "ws")  # a second open in the process must not halve it again
    try:
        assert _limit_bytes(again.duck) == pytest.approx(duck_default * 0.625, rel=0.01)
    finally:
        again.close()
    toml = tmp_path / "ws" / "custlens.toml"
    toml.write_text(toml.read_text().replace('# memory_limit = "8GB"', 'memory_limit = "300MB"'))
    ws = open_workspace(tmp_path / "ws")
    try:
        assert _limit_bytes(ws.duck) == pytest.approx(300e6, rel=0.01)
    finally:
        ws.close()
