"""Loader: formats into tables, ledger, quarantine, accounting identity, duplicates, history, PII, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from custlens.errors import InputError
from custlens.ingest import ingest

D = Path(__file__).parent.parent / "data" / "ingest"


def _identity(r) -> None:
    assert r.rows_read == r.loaded + r.duplicates + r.quarantined
    assert r.status == "loaded"


def _all_text(ws, table: str) -> str:
    df = ws.sql(f'SELECT * FROM "{table}"').fetchdf()
    return df.to_csv(index=False)


def test_every_format_lands_in_its_table(ws):
    reps = ingest(ws, [D / "customers_gbk.csv"], "customers")
    reps += ingest(ws, [D / "orders_semicolon.csv", D / "orders.parquet"], "orders")
    reps += ingest(ws, [D / "events_tab.tsv", D / "events.jsonl", D / "events_pipe.csv"], "events")
    reps += ingest(ws, [D / "products.json"], "products")
    reps += ingest(ws, [], "products", db_url=f"sqlite:///{D / 'shop.sqlite'}", db_table="products")
    for r in reps:
        _identity(r)
    assert [r.quarantined for r in reps] == [0] * len(reps)
    c = ws.sql("SELECT user_id, gender, province, city, member_level, register_time::VARCHAR, _source, _row "
               "FROM customers ORDER BY user_id").fetchall()
    assert c[0] == ("C001", "male", "广东", "深圳", "gold", "2023-01-05 10:00:00", "customers_gbk.csv", 1)
    assert c[1][1:5] == ("female", "浙江", "杭州", "regular") and c[2][2:5] == ("北京", "北京", "vip2")
    o = dict(ws.sql("SELECT order_id, amount FROM orders").fetchall())
    assert o == {"A1": 1299.0, "A2": 1299.0, "A3": -12.5, "Q1": 99.5, "Q2": 10.0}
    st = dict(ws.sql("SELECT order_id, status FROM orders").fetchall())
    assert st["A2"] == "refunded" and st["A3"] == "cancelled"
    ev = ws.sql("SELECT platform, event_time::VARCHAR FROM events WHERE _source = 'events_tab.tsv' ORDER BY _row")
    assert ev.fetchall() == [("APP", "2024-05-12 09:15:00"), ("web", "2024-05-12 09:15:00.123"),
                             ("mini-program", "2024-05-12 09:15:00")]
    assert ws.row_count("events") == 8 and ws.row_count("products") == 3  # P1, P2 again from sqlite: duplicates
    assert reps[-1].duplicates == 2 and reps[-1].loaded == 1


def test_xlsx_sheets_and_table_guess(ws):
    reps = ingest(ws, [D / "crm.xlsx"], None)
    assert [(r.source, r.table, r.loaded) for r in reps] == [("crm.xlsx#会员", "customers", 3),
                                                              ("crm.xlsx#orders", "orders", 2)]


def test_same_content_twice_loads_nothing(ws, tmp_path):
    (r1,) = ingest(ws, [D / "orders_semicolon.csv"], "orders")
    copy = tmp_path / "renamed.csv"
    copy.write_bytes((D / "orders_semicolon.csv").read_bytes())
    (r2,) = ingest(ws, [copy], "orders")
    assert r2.status == "already_loaded" and r2.loaded == 0 and r2.load_id == r1.load_id
    assert ws.row_count("orders") == 3
    assert ws.sql("SELECT count(*) FROM ingest_ledger WHERE status = 'loaded'").fetchone()[0] == 1


BAD = """客户编号,姓名,性别,手机号,会员等级,注册时间,备注,更新时间
K1,张伟,男,13812345678,金卡,2024-01-01,ok,2024-02-01
K2,李娜,外星人,13987654321,银卡,2024-01-02,性别不对,2024-02-01
K3,王芳,女,15011112222,银卡,not a date,联系 13700001111,2024-02-01
,赵六,男,13600002222,普通,2024-01-04,缺少编号,2024-02-01
K5,钱七,女,13500003333,普通,2099-01-01,未来时间,2024-02-01
K1,张伟,男,13812345678,金卡,2024-01-01,ok,2024-02-01
"""


def test_bad_rows_are_quarantined_with_reasons_and_masked(ws, tmp_path):
    p = tmp_path / "crm.csv"
    p.write_text(BAD, encoding="utf-8")
    (r,) = ingest(ws, [p], "customers")
    _identity(r)
    assert (r.rows_read, r.loaded, r.duplicates, r.quarantined) == (6, 1, 1, 4)
    led = ws.sql("SELECT rows_read, loaded, duplicates, quarantined FROM ingest_ledger").fetchone()
    assert led == (6, 1, 1, 4)
    q = ws.sql('SELECT "row", column_name, reason, raw, stage, source FROM quarantine ORDER BY "row"').fetchall()
    assert [(x[0], x[1]) for x in q] == [(2, "gender"), (3, "register_time"), (4, "user_id"), (5, "register_time")]
    assert "外星人" in q[0][2] and "not a date" in q[1][2] and "2099-01-01" in q[3][2]
    assert all(x[4] == "ingest" and x[5] == "crm.csv" for x in q)
    raw_text = json.dumps([x[2:4] for x in q], ensure_ascii=False)
    for phone in ("13987654321", "15011112222", "13600002222", "13500003333", "13700001111"):
        assert phone not in raw_text  # masked in raw JSON, also inside a free-text note
    raw = json.loads(q[0][3])
    assert raw["客户编号"] == "K2" and raw["手机号"].startswith("139") and "*" in raw["手机号"]
    assert raw["姓名"] != "李娜"
    # nothing raw in the warehouse either
    text = _all_text(ws, "customers")
    assert "13812345678" not in text and "张伟" not in text
    row = ws.sql("SELECT phone, phone_pseudo, phone_enc, name FROM customers").fetchone()
    assert "*" in row[0] and len(row[1]) == 64 and row[2] and row[3] != "张伟"


def test_order_rules_and_key_duplicates(ws, tmp_path):
    p = tmp_path / "o1.csv"
    p.write_text("order_id,user_id,order_time,amount,status,discount\n"
                 "A,u1,2024-05-01,10,paid,0\nB,u1,2024-05-01,-3,paid,0\nC,u2,2024-05-01,-3,refunded,0\n"
                 "D,u2,2024-05-01,5,pending,0\nE,u3,2024-05-01,5,paid,-1\nA,u9,2024-05-02,99,paid,0\n", encoding="utf-8")
    (r,) = ingest(ws, [p], "orders")
    _identity(r)
    assert (r.loaded, r.duplicates, r.quarantined) == (2, 1, 3)
    assert ws.sql("SELECT user_id FROM orders WHERE order_id = 'A'").fetchone() == ("u1",)  # first one wins
    reasons = dict(ws.sql("SELECT column_name, reason FROM quarantine").fetchall())
    assert set(reasons) == {"amount", "status", "discount"}
    p2 = tmp_path / "o2.csv"
    p2.write_text("order_id,user_id,order_time,amount\nA,u1,2024-05-01,10\nF,u4,2024-05-03,1\n", encoding="utf-8")
    (r2,) = ingest(ws, [p2], "orders")
    assert (r2.loaded, r2.duplicates, r2.quarantined) == (1, 1, 0)


def test_customers_latest_wins_and_history(ws, tmp_path):
    v1 = tmp_path / "v1.csv"
    v1.write_text("user_id,member_level,update_time\nU1,普通,2024-01-01\nU2,金卡,2024-03-01\n"
                  "U3,银卡,2024-01-01\nU3,金卡,2024-02-01\n", encoding="utf-8")
    (r1,) = ingest(ws, [v1], "customers")
    assert (r1.loaded, r1.duplicates) == (3, 1)
    v2 = tmp_path / "v2.csv"
    v2.write_text("user_id,member_level,update_time\nU1,钻石,2024-06-01\nU2,普通,2024-01-15\n", encoding="utf-8")
    (r2,) = ingest(ws, [v2], "customers")
    _identity(r2)
    assert (r2.loaded, r2.duplicates) == (1, 1)
    cur = dict(ws.sql("SELECT user_id, member_level FROM customers").fetchall())
    assert cur == {"U1": "diamond", "U2": "gold", "U3": "gold"}
    hist = sorted(ws.sql("SELECT user_id, member_level FROM customers_history").fetchall())
    assert hist == [("U1", "regular"), ("U2", "regular"), ("U3", "silver")]


def test_region_pii_extra_and_derived_event_id(ws, tmp_path):
    p = tmp_path / "ev.csv"
    p.write_text("user_id,event,event_time,duration_s,backup_contact\n"
                 "u1,view,2024-05-12 09:00:00,3,13812340001\nu2,view,2024-05-12 09:01:00,-2,13812340002\n"
                 "u3,click,2024-05-12 09:02:00,1,13812340003\n", encoding="utf-8")
    (r,) = ingest(ws, [p], "events")
    assert r.mapping["pii"] == {"backup_contact": "phone"} and r.mapping["derived"] == ["event_id"]
    assert (r.loaded, r.quarantined) == (2, 1)
    assert "13812340001" not in _all_text(ws, "events")
    ids = [x[0] for x in ws.sql("SELECT event_id FROM events ORDER BY _row").fetchall()]
    assert all(i.startswith("h") and len(i) == 33 for i in ids)
    p2 = tmp_path / "ev2.csv"  # overlapping export: the shared row dedupes through its derived id
    p2.write_text("user_id,event,event_time,duration_s,backup_contact\n"
                  "u3,click,2024-05-12 09:02:00,1,13812340003\nu4,view,2024-05-12 10:00:00,5,13812340004\n",
                  encoding="utf-8")
    (r2,) = ingest(ws, [p2], "events")
    assert (r2.loaded, r2.duplicates) == (1, 1)
    c = tmp_path / "c.csv"
    c.write_text("user_id,地区\nx1,广东省深圳市南山区\nx2,火星\n", encoding="utf-8")
    (rc,) = ingest(ws, [c], "customers")
    assert (rc.loaded, rc.quarantined) == (1, 1)
    assert ws.sql("SELECT province, city FROM customers").fetchone() == ("广东", "深圳")


def test_unguessable_table_and_bad_file_errors(ws, tmp_path):
    p = tmp_path / "stuff.csv"
    p.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(InputError) as e:
        ingest(ws, [p], None)
    assert "--table" in e.value.fix and "stuff.csv" in e.value.message


def _big_events(path: Path, n: int) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write("event_id,user_id,event,event_time,duration_s\n")
        f.writelines(f"e{i},u{i % 977},view,2024-05-{1 + i % 28:02d} 10:{i % 60:02d}:00,{i % 90}\n" for i in range(n))


@pytest.mark.slow
def test_crash_mid_load_leaves_warehouse_unchanged(ws, tmp_path):
    big = tmp_path / "big_events.csv"
    _big_events(big, 250_000)
    ingest(ws, [D / "events_pipe.csv"], "events")
    root = ws.root
    ws.close()
    code = ("import custlens, sys; from custlens.ingest import ingest; "
            f"ingest(custlens.open({str(root)!r}), [{str(big)!r}], 'events')")
    env = {**os.environ, "CUSTLENS_TEST_CRASH_AFTER_BATCHES": "2"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=300)
    assert proc.returncode == 137, proc.stderr.decode()[-2000:]
    import custlens

    w = custlens.open(root)
    try:
        assert w.row_count("events") == 2  # only the earlier load
        assert w.sql("SELECT count(*) FROM ingest_ledger").fetchone()[0] == 1
        assert w.sql("SELECT count(*) FROM quarantine").fetchone()[0] == 0
        (r,) = ingest(w, [big], "events")
        assert (r.rows_read, r.loaded, r.duplicates, r.quarantined) == (250_000, 250_000, 0, 0)
        assert w.row_count("events") == 250_002
        assert w.sql("SELECT count(DISTINCT event_id) FROM events").fetchone()[0] == 250_002
    finally:
        w.close()


def test_cli_json_ledger_quarantine(ws, tmp_path):
    from custlens.cli import app

    p = tmp_path / "orders_x.csv"
    p.write_text("订单号,用户ID,下单时间,实付金额,手机号\nA,u1,2024-05-01,10,13812345678\nB,u2,bad,5,13812345679\n",
                 encoding="utf-8")
    root = str(ws.root)
    ws.close()
    runner = CliRunner()
    res = runner.invoke(app, ["-w", root, "ingest", str(p), "--table", "orders", "--format", "json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    (f,) = doc["files"]
    assert (f["rows_read"], f["loaded"], f["duplicates"], f["quarantined"], f["status"]) == (2, 1, 0, 1, "loaded")
    assert f["mapping"]["mapped"]["订单号"] == "order_id" and f["mapping"]["pii"] == {"手机号": "phone"}
    res = runner.invoke(app, ["-w", root, "ingest", str(p), "--table", "orders", "--format", "json"])
    assert json.loads(res.stdout)["files"][0]["status"] == "already_loaded"
    res = runner.invoke(app, ["-w", root, "quarantine", "--table", "orders", "--format", "json"])
    rows = json.loads(res.stdout)["rows"]
    assert len(rows) == 1 and rows[0]["row"] == 2 and "bad" in rows[0]["reason"]
    assert "13812345679" not in res.stdout
    res = runner.invoke(app, ["-w", root, "ledger", "--format", "json"])
    assert [x["status"] for x in json.loads(res.stdout)["loads"]] == ["loaded"]
    proc = subprocess.run([sys.executable, "-m", "custlens", "-w", root, "ingest", str(tmp_path / "nope.csv")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "nope.csv" in proc.stderr and "Traceback" not in proc.stderr


def test_large_file_path_stages_on_disk_with_same_accounting(ws, tmp_path, monkeypatch):
    """Above the size threshold the stage is a regular table in the load's transaction; results are identical."""
    from custlens.ingest.loader import STAGE_ON_DISK_ENV, ingest

    src = tmp_path / "orders.csv"
    src.write_text("订单号,用户ID,下单时间,实付金额,订单状态\n"
                   "O1,U1,2024-05-01 10:00:00,\"¥1,299.00\",已支付\n"
                   "O1,U1,2024-05-01 10:00:00,\"¥1,299.00\",已支付\n"
                   "O2,U2,not a date,10,已支付\n"
                   "O3,U3,2024-05-02,-5,已支付\n"
                   "O4,U4,20240503,88,已支付\n", encoding="utf-8")
    monkeypatch.setenv(STAGE_ON_DISK_ENV, "0")  # every file counts as large
    rep = ingest(ws, [src], "orders")[0]
    assert (rep.rows_read, rep.loaded, rep.duplicates, rep.quarantined) == (5, 2, 1, 2)
    assert sorted(r[0] for r in ws.duck.execute("SELECT order_id FROM orders").fetchall()) == ["O1", "O4"]
    # the on-disk stage is gone after the load
    left = ws.duck.execute("SELECT COUNT(*) FROM duckdb_tables() WHERE table_name LIKE '_cl_stage_%'").fetchone()[0]
    assert left == 0
