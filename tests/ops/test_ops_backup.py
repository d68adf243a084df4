"""Backup and restore: consistent snapshot, sealed keys, per-table verification, audit chain, kill -9."""

from __future__ import annotations

import base64
import json

import pytest

from custlens.errors import CustlensError, KeyMaterialError
from custlens.ops.archive import archive, table_checksum
from custlens.ops.backup import PASSPHRASE_ENV, backup, restore
from custlens.workspace import open_workspace
from tests.ops.conftest import PASS, no_traceback, run_cli


@pytest.fixture
def passphrase(monkeypatch):
    monkeypatch.setenv(PASSPHRASE_ENV, PASS)
    return PASS


def _all_sigs(root):
    ws = open_workspace(root)
    try:
        names = [r[0] for r in ws.duck.execute("SELECT table_name FROM duckdb_tables() WHERE NOT temporary "
                                               "ORDER BY 1").fetchall()]
        return {n: table_checksum(ws.duck, f'SELECT * FROM main."{n}"') for n in names}
    finally:
        ws.close()


def test_ops_backup_restore_roundtrip(demo_ws, tmp_path, passphrase):
    from custlens.security import audit

    ws = open_workspace(demo_ws)
    for i in range(3):
        audit.record(ws, "test", target=f"t{i}", username="owner")
    archive(ws, "2023-07-01", ["orders"], compact=False)
    ws.close()
    sigs = _all_sigs(demo_ws)
    key = (demo_ws / "keys" / "custlens.key").read_bytes()
    res = backup(open_workspace(demo_ws), tmp_path / "bk")
    assert res.tables["orders"]["rows"] == sigs["orders"][0]
    man = json.loads((tmp_path / "bk" / "manifest.json").read_text())
    assert man["audit"]["records"] == 3 and man["keys"]["cipher"] == "AES-256-GCM"
    assert any(k.startswith("archive/orders/month=") for k in man["files"])
    raw_key = base64.b64decode(key.strip())
    for f in (tmp_path / "bk").rglob("*"):  # the key never appears in clear, in any encoding
        if f.is_file():
            data = f.read_bytes()
            assert key.strip() not in data and raw_key not in data, f
    rep = restore(tmp_path / "bk", tmp_path / "restored")
    assert rep.audit["ok"] and rep.audit["n_records"] == 3
    assert all(v["ok"] for v in rep.tables.values()) and rep.checksums_compared
    assert _all_sigs(tmp_path / "restored") == sigs
    assert (tmp_path / "restored" / "keys" / "custlens.key").read_bytes() == key
    assert ((tmp_path / "restored" / "keys" / "custlens.key").stat().st_mode & 0o077) == 0
    assert sorted(p.name for p in (tmp_path / "restored" / "archive" / "orders").iterdir()) == \
        sorted(p.name for p in (demo_ws / "archive" / "orders").iterdir())


def test_ops_backup_refusals(demo_ws, tmp_path, monkeypatch):
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    with pytest.raises(KeyMaterialError, match=PASSPHRASE_ENV):
        backup(open_workspace(demo_ws), tmp_path / "bk")
    assert not (tmp_path / "bk").exists()
    monkeypatch.setenv(PASSPHRASE_ENV, PASS)
    backup(open_workspace(demo_ws), tmp_path / "bk")
    with pytest.raises(CustlensError, match="not empty"):
        backup(open_workspace(demo_ws), tmp_path / "bk")
    monkeypatch.setenv(PASSPHRASE_ENV, "a different passphrase")
    with pytest.raises(KeyMaterialError, match="wrong passphrase"):
        restore(tmp_path / "bk", tmp_path / "r1")
    assert not (tmp_path / "r1").exists()
    monkeypatch.setenv(PASSPHRASE_ENV, PASS)
    with pytest.raises(CustlensError, match="not empty"):
        restore(tmp_path / "bk", demo_ws)


def test_ops_restore_detects_damage(demo_ws, tmp_path, passphrase):
    import duckdb

    backup(open_workspace(demo_ws), tmp_path / "bk")
    wh = tmp_path / "bk" / "warehouse.duckdb"
    con = duckdb.connect(str(wh))
    con.execute("DELETE FROM orders WHERE order_id IN (SELECT order_id FROM orders LIMIT 1)")
    con.close()
    with pytest.raises(CustlensError, match="warehouse.duckdb does not match"):
        restore(tmp_path / "bk", tmp_path / "r")
    man_p = tmp_path / "bk" / "manifest.json"
    man = json.loads(man_p.read_text())
    from custlens.ops.backup import sha256_file

    man["warehouse"]["sha256"] = sha256_file(wh)  # an attacker also fixes the file checksum …
    man_p.write_text(json.dumps(man))
    with pytest.raises(CustlensError, match="table orders"):  # … the table checksum still catches it
        restore(tmp_path / "bk", tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_ops_restore_refuses_broken_audit_chain(demo_ws, tmp_path, passphrase):
    import duckdb

    from custlens.ops.backup import sha256_file
    from custlens.security import audit

    ws = open_workspace(demo_ws)
    for i in range(3):
        audit.record(ws, "test", target=f"t{i}", username="owner")
    backup(ws, tmp_path / "bk")
    wh = tmp_path / "bk" / "warehouse.duckdb"
    con = duckdb.connect(str(wh))
    con.execute("UPDATE audit_log SET target = 'forged' WHERE seq = 2")
    con.close()
    man_p = tmp_path / "bk" / "manifest.json"
    man = json.loads(man_p.read_text())
    man["warehouse"]["sha256"] = sha256_file(wh)
    con = duckdb.connect(str(wh), read_only=True)
    from custlens.ops.backup import table_stats

    man["tables"] = table_stats(con, con.execute("SELECT current_database()").fetchone()[0])
    con.close()
    man_p.write_text(json.dumps(man))
    with pytest.raises(CustlensError, match="audit log failed verification"):
        restore(tmp_path / "bk", tmp_path / "r")
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_ops_backup_kill9_then_rerun(demo_ws, tmp_path):
    env = {PASSPHRASE_ENV: PASS, "CUSTLENS_TEST_CRASH_AT": "backup_mid"}
    sigs = _all_sigs(demo_ws)
    p = run_cli("backup", str(tmp_path / "bk"), ws=demo_ws, env=env)
    assert p.returncode in (137, -9), p.stderr[-2000:]
    assert not (tmp_path / "bk").exists()  # nothing that looks like a backup
    after = _all_sigs(demo_ws)
    assert {k: v for k, v in after.items() if not k.startswith("audit")} == \
        {k: v for k, v in sigs.items() if not k.startswith("audit")}  # the workspace is untouched
    ok = run_cli("backup", str(tmp_path / "bk"), "--format", "json", ws=demo_ws, env={PASSPHRASE_ENV: PASS})
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert not list(tmp_path.glob(".custlens-partial-*"))  # the interrupted run's leftovers are gone
    r = run_cli("restore", str(tmp_path / "bk"), "--to", str(tmp_path / "r"), "--format", "json",
                env={PASSPHRASE_ENV: PASS})
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads(r.stdout)
    assert doc["audit"]["ok"]
    restored = _all_sigs(tmp_path / "r")
    for name, sig in sigs.items():  # the backup itself added its audit record; everything else is identical
        if not name.startswith("audit"):
            assert restored[name] == sig, name


def test_ops_backup_cli_messages(demo_ws, tmp_path):
    p = run_cli("backup", str(tmp_path / "bk"), ws=demo_ws, env={PASSPHRASE_ENV: ""})
    assert p.returncode == 2 and PASSPHRASE_ENV in p.stderr
    no_traceback(p)
    p = run_cli("restore", str(tmp_path / "nothing"), "--to", str(tmp_path / "r"), env={PASSPHRASE_ENV: PASS})
    assert p.returncode == 2 and "not a custlens backup" in p.stderr
    no_traceback(p)
