"""Identity stitching and the customer profile on small hand-built fixtures (real DuckDB workspace)."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from custlens.privacy.transforms import mask, pseudonymize
from custlens.profile.build import build_profile, write_scores
from custlens.profile.identity import explain, split, stitch, unsplit
from tests.conftest import insert_rows


def _cust(ws, uid, source, phone=None, email=None, reg="2023-01-01", **kw):
    row = {"user_id": uid, "_source": source, "register_time": datetime.fromisoformat(reg)}
    if phone:
        row.update(phone=mask(phone, "phone"), phone_pseudo=pseudonymize(phone, ws.key, "phone"))
    if email:
        row.update(email=mask(email, "email"), email_pseudo=pseudonymize(email, ws.key, "email"))
    row.update(kw)
    return row


@pytest.fixture
def linked(ws):
    rows = [
        _cust(ws, "C1", "crm.csv", phone="13800001111", gender="female", province="广东", member_level="gold",
              birth_date=date(1990, 6, 1)),
        _cust(ws, "C2", "crm.csv", phone="13800002222"),
        _cust(ws, "C3", "crm.csv", email="li@example.com"),
        _cust(ws, "C9", "crm.csv"),
        _cust(ws, "C10", "crm.csv"),
        _cust(ws, "A1", "app.csv", phone="+86 138-0000-1111"),  # same phone, other format
        _cust(ws, "A3", "app.csv", email="LI@example.com", phone="13900003333"),
        _cust(ws, "A4", "app.csv", phone="13900003333"),
    ]
    # a front-desk phone shared by 12 records: too common to link on
    rows += [_cust(ws, f"F{i}", "desk.csv", phone="13700000000") for i in range(12)]
    insert_rows(ws, "customers", rows)
    return ws


def test_stitch_links_shared_identifiers_transitively(linked):
    res = stitch(linked)
    m = res.map.set_index("user_id")
    assert m.loc["A1", "person_id"] == "C1"  # CRM (the larger source) gives the canonical id
    assert m.loc["A3", "person_id"] == m.loc["A4", "person_id"] == m.loc["C3", "person_id"] == "C3"
    assert m.loc["C3", "cluster_size"] == 3
    assert set(m.loc["C3", "linked_via"].split(",")) == {"email", "phone"}
    assert m.loc["C2", "person_id"] == "C2" and m.loc["C2", "status"] == "single"
    # the shared front-desk phone links nobody and is reported
    assert all(m.loc[f"F{i}", "person_id"] == f"F{i}" for i in range(12))
    assert any(d["why"] == "too_common" and d["members"] == 12 for d in res.denied)
    assert res.n_persons == 20 - 1 - 2


def test_deny_list_blocks_a_link(linked):
    linked.config.identity.deny_list = ["13800001111"]
    m = stitch(linked).map.set_index("user_id")
    assert m.loc["A1", "person_id"] == "A1"


def test_cluster_cap_stops_runaway_merge(linked):
    linked.config.identity.max_cluster_size = 2
    res = stitch(linked)
    m = res.map.set_index("user_id")
    assert {m.loc[u, "person_id"] for u in ("C3", "A3", "A4")} == {"C3", "A3", "A4"}  # the 3-cluster is not merged
    assert ["A3", "A4", "C3"] in res.capped
    assert m.loc["A1", "person_id"] == "C1"  # a 2-cluster still is


def test_explain_names_the_rule_and_masked_identifier(linked):
    stitch(linked)
    ex = explain(linked, "A1", lang="en")
    assert ex["person_id"] == "C1"
    assert ex["links"] == [{"kind": "phone", "display": "138****1111", "user_ids": ["A1", "C1"]}]
    assert "phone" in ex["rule"]
    assert "13800001111" not in str(ex)


def test_split_is_reversible(linked):
    stitch(linked)
    m = split(linked, "A1").map.set_index("user_id")
    assert m.loc["A1", "person_id"] == "A1" and m.loc["A1", "status"] == "split"
    m = unsplit(linked, "A1").map.set_index("user_id")
    assert m.loc["A1", "person_id"] == "C1"


def test_person_index_survives_rewrites_of_the_map(linked):
    """identity_map carries indexes on person_id (the 360's member lookup) and user_id (its person lookup);
    rewriting the map (re-stitch, split) keeps them, and lookups through them return what a scan returns."""
    from custlens.profile.identity import PERSON_INDEX, USER_INDEX

    con = linked.duck
    for step in (lambda: stitch(linked), lambda: stitch(linked), lambda: split(linked, "A1")):
        step()
        idx = con.execute("SELECT index_name FROM duckdb_indexes() WHERE table_name = 'identity_map' "
                          "ORDER BY index_name").fetchall()
        assert idx == sorted([(PERSON_INDEX,), (USER_INDEX,)])
        for pid in ("C1", "C3", "A1", "F3"):
            got = sorted(r[0] for r in con.execute("SELECT user_id FROM identity_map WHERE person_id = ?", [pid])
                         .fetchall())
            scan = sorted(r[0] for r in con.execute("SELECT user_id FROM identity_map WHERE person_id || '' = ?",
                                                    [pid]).fetchall())
            assert got == scan
        for uid in ("C1", "A1", "A3", "A4", "nobody"):
            got = con.execute("SELECT person_id FROM identity_map WHERE user_id = ?", [uid]).fetchall()
            scan = con.execute("SELECT person_id FROM identity_map WHERE user_id || '' = ?", [uid]).fetchall()
            assert got == scan and len(got) == (uid != "nobody")
    assert sorted(r[0] for r in con.execute("SELECT user_id FROM identity_map WHERE person_id = 'C3'").fetchall()) \
        == ["A3", "A4", "C3"]


def test_profile_aggregates_across_linked_records(linked):
    insert_rows(linked, "orders", [
        {"order_id": "o1", "user_id": "C1", "order_time": datetime(2024, 3, 1, 10), "amount": 100.0, "status": "paid",
         "channel": "app"},
        {"order_id": "o2", "user_id": "A1", "order_time": datetime(2024, 3, 11, 10), "amount": 300.0,
         "status": "paid", "channel": "web"},
        {"order_id": "o3", "user_id": "A1", "order_time": datetime(2024, 3, 21, 10), "amount": 50.0,
         "status": "paid", "channel": "web"},
        {"order_id": "o4", "user_id": "C1", "order_time": datetime(2024, 3, 22, 10), "amount": 80.0,
         "status": "refunded", "channel": "web"},
        {"order_id": "o5", "user_id": "C2", "order_time": datetime(2024, 3, 30, 10), "amount": 20.0, "status": "paid"},
    ])
    insert_rows(linked, "order_items", [
        {"order_id": "o1", "line": 1, "product_id": "p1", "category": "美妆", "quantity": 5},
        {"order_id": "o2", "line": 1, "product_id": "p2", "category": "数码", "quantity": 1},
        {"order_id": "o3", "line": 1, "product_id": "p2", "category": "数码", "quantity": 1},
    ])
    insert_rows(linked, "tickets", [
        {"ticket_id": "t1", "user_id": "A1", "created_time": datetime(2024, 3, 12), "satisfaction": 2.0},
        {"ticket_id": "t2", "user_id": "C1", "created_time": datetime(2024, 3, 13), "satisfaction": 4.0},
    ])
    insert_rows(linked, "events", [
        {"event_id": "e1", "user_id": "A1", "event": "view", "event_time": datetime(2024, 3, 25, 9),
         "platform": "APP", "product_id": "p2"},
        {"event_id": "e2", "user_id": "C1", "event": "view", "event_time": datetime(2024, 3, 26, 9),
         "platform": "APP", "product_id": "p2"},
    ])
    res = build_profile(linked, as_of=date(2024, 3, 31))
    assert res.persons == 17
    p = linked.table("customer_profile").to_pandas().set_index("user_id")
    c1 = p.loc["C1"]
    assert c1.order_count == 3 and c1.revenue == pytest.approx(450.0)
    assert c1.aov == pytest.approx(150.0)
    assert c1.refund_count == 1
    assert c1.repurchase_interval_days == pytest.approx(10.0)  # 2024-03-01 → 2024-03-21 over 2 gaps
    assert c1.days_since_last_order == 10  # last paid order 03-21, as of 03-31
    assert c1.preferred_category == "美妆"  # 5 units beat 2
    assert c1.preferred_channel == "web"
    assert c1.service_contacts == 2 and c1.avg_satisfaction == pytest.approx(3.0)
    assert c1.days_since_last_activity == 5
    assert c1.source_records == 2
    assert c1.age == 33 and c1.phone == "138****1111"
    assert p.loc["C9"].order_count == 0
    # scores written by a model survive a rebuild
    import pandas as pd

    write_scores(linked, pd.DataFrame({"user_id": ["C1", "C2"], "clv": [123.5, 7.0]}))
    assert linked.table("customer_profile").to_pandas().set_index("user_id").loc["C1", "clv"] == 123.5
    build_profile(linked, as_of=date(2024, 3, 31))
    assert linked.table("customer_profile").to_pandas().set_index("user_id").loc["C2", "clv"] == 7.0
    # both rewrites of the profile (build, scores) leave it indexed by user_id, and the index finds the row
    from custlens.profile.build import PROFILE_INDEX

    for step in (lambda: None, lambda: write_scores(linked, pd.DataFrame({"user_id": ["C1"], "clv": [1.0]}))):
        step()
        assert linked.duck.execute("SELECT index_name FROM duckdb_indexes() WHERE table_name = 'customer_profile'"
                                   ).fetchall() == [(PROFILE_INDEX,)]
        assert linked.duck.execute("SELECT clv FROM customer_profile WHERE user_id = 'C1'").fetchall() == \
            linked.duck.execute("SELECT clv FROM customer_profile WHERE user_id || '' = 'C1'").fetchall()
