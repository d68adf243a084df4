from __future__ import annotations

import os
import stat

import duckdb
import pytest

import custlens
from custlens.errors import KeyMaterialError, ValidationError, WorkspaceError
from custlens.model.schema import TABLES
from custlens.workspace import check_identifier


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
