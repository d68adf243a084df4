"""Regenerate the small ingest fixtures in this folder: `python tests/data/ingest/make_fixtures.py`."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import xlsxwriter

HERE = Path(__file__).parent

CUSTOMERS_ZH = [
    ["客户编号", "姓名", "性别", "手机号", "地区", "会员等级", "注册时间", "更新时间"],
    ["C001", "张伟", "男", "13812345678", "广东省深圳市南山区", "金卡", "2023-01-05 10:00:00", "2024-01-01 00:00:00"],
    ["C002", "李娜", "女士", "13987654321", "浙江杭州", "普通会员", "2023/2/6", "2024-01-01 00:00:00"],
    ["C003", "王芳", "F", "15011112222", "北京市朝阳区", "VIP2", "2023年3月7日", "2024-01-01 00:00:00"],
]


def main() -> None:
    text = "\n".join(",".join(r) for r in CUSTOMERS_ZH) + "\n"
    (HERE / "customers_gbk.csv").write_bytes(text.encode("gb18030"))
    (HERE / "customers_bom.csv").write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    (HERE / "orders_semicolon.csv").write_text(
        "order_id;user_id;order_time;amount;status\n"
        "A1;C001;2024-05-12T09:15:00+08:00;¥1,299.00;paid\n"
        "A2;C002;20240513;\"1 299,00\";已退款\n"
        "A3;C003;45424;(12.50);cancelled\n", encoding="utf-8")
    (HERE / "events_tab.tsv").write_text(
        "user_id\tevent\tevent_time\tplatform\tduration_s\n"
        "C001\tview\t1715476500\t安卓\t12.5\n"
        "C002\tclick\t1715476500123\tH5\t3\n"
        "C003\tview\t2024/05/12 9:15\t小程序\t0\n", encoding="utf-8")
    (HERE / "events_pipe.csv").write_text(
        "user_id|event|event_time\nC001|view|2024-05-12 09:15:00\nC002|view|2024-05-12 09:16:00\n", encoding="utf-8")
    with open(HERE / "events.jsonl", "w", encoding="utf-8") as f:
        for i, (u, e) in enumerate([("C001", "view"), ("C002", "add_to_cart"), ("C003", "order")]):
            f.write(json.dumps({"event_id": f"J{i}", "user_id": u, "event": e, "event_time": f"2024-05-1{i} 08:00:00",
                                "properties": {"page": "/p/" + str(i)}}, ensure_ascii=False) + "\n")
    (HERE / "products.json").write_text(json.dumps(
        [{"product_id": "P1", "name": "保温杯", "category": "家居", "price": 59.9},
         {"product_id": "P2", "name": "耳机", "category": "数码", "price": "¥299"}], ensure_ascii=False), encoding="utf-8")
    pq.write_table(pa.table({"order_id": ["Q1", "Q2"], "user_id": ["C001", "C002"],
                             "order_time": pa.array([1715476500000000, 1715562900000000], pa.timestamp("us")),
                             "amount": [99.5, 10.0], "status": ["paid", "paid"]}), HERE / "orders.parquet")
    wb = xlsxwriter.Workbook(str(HERE / "crm.xlsx"))
    s1 = wb.add_worksheet("会员")
    for r, row in enumerate(CUSTOMERS_ZH):
        s1.write_row(r, 0, row)
    s2 = wb.add_worksheet("orders")
    for r, row in enumerate([["订单号", "客户编号", "下单时间", "实付金额"], ["X1", "C001", "2024-05-12", 100],
                             ["X2", "C002", "2024-05-13", 200.5]]):
        s2.write_row(r, 0, row)
    wb.close()
    db = HERE / "shop.sqlite"
    db.unlink(missing_ok=True)
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE products (product_id TEXT, name TEXT, category TEXT, price REAL)")
    con.executemany("INSERT INTO products VALUES (?, ?, ?, ?)",
                    [("P1", "保温杯", "家居", 59.9), ("P2", "耳机", "数码", 299.0), ("P3", "T恤", "服饰", None)])
    con.commit()
    con.close()


if __name__ == "__main__":
    main()
