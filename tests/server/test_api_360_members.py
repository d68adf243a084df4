"""The customer-360 member queries: one equality lookup per member (so a stitched person's ids, far apart in
a table sorted by user_id, are point reads), with the same rows as an IN over the members."""

from __future__ import annotations

import json

import duckdb
import pytest

from custlens.server import api


@pytest.fixture()
def con() -> duckdb.DuckDBPyConnection:
    c = duckdb.connect()
    c.execute("CREATE TABLE customer_profile AS SELECT 'C' || lpad(i::VARCHAR, 6, '0') AS user_id, i AS score "
              "FROM range(3000) t(i)")
    # ids far apart in sort order (C… and U…), thousands of other customers between them, sorted as optimize does
    c.execute("CREATE TABLE orders AS SELECT * FROM (SELECT CASE WHEN i % 2 = 0 THEN 'C' ELSE 'U' END || "
              "lpad((i // 2)::VARCHAR, 6, '0') AS user_id, 'o' || i::VARCHAR || '-' || j::VARCHAR AS order_id, "
              "TIMESTAMP '2024-01-01' + to_minutes((i * 7 + j * 13) % 50000) AS order_time, (i + j) * 1.5 AS amount "
              "FROM range(6000) t(i), range(4) u(j)) ORDER BY user_id, order_time")
    c.execute("CREATE TABLE customer_tags AS SELECT user_id, 'g' AS tag_group, 'n' || (hash(user_id) % 5)::VARCHAR "
              "AS tag_name, 'v' AS tag_value FROM (SELECT DISTINCT user_id FROM orders) ORDER BY user_id")
    c.execute("CREATE TABLE identity_map AS SELECT user_id, CASE WHEN user_id IN ('C000010', 'U002990', 'C002500') "
              "THEN 'C000010' ELSE user_id END AS person_id, CASE WHEN user_id IN ('C000010', 'U002990', 'C002500') "
              "THEN 3 ELSE 1 END AS cluster_size FROM (SELECT DISTINCT user_id FROM orders) ORDER BY user_id")
    return c


def _plan(visible: str | None = None) -> api.Plan360:
    payload = "to_json({'order_id': g.\"order_id\", 'amount': g.\"amount\"})"
    return api.Plan360(
        identity=("SELECT person_id, cluster_size FROM identity_map AS g WHERE g.user_id = $uid",
                  "SELECT user_id, person_id FROM identity_map AS g WHERE g.person_id = ANY($pids)"),
        visible=visible, profile="SELECT * FROM customer_profile AS g WHERE g.user_id = $uid LIMIT 1",
        tags="SELECT * FROM customer_tags", timeline=(("orders", "order_time", "SELECT * FROM orders", payload),),
        read={}, archived=())


def _reference(con: duckdb.DuckDBPyConnection, members: list[str], n: int) -> list[tuple]:
    return con.execute("SELECT order_id, order_time FROM orders WHERE user_id IN (SELECT unnest($ids)) "
                       "ORDER BY order_time DESC, order_id LIMIT $n", {"ids": members, "n": n}).fetchall()


@pytest.mark.parametrize("uid", ["U002990", "C000010", "C001234"])
def test_member_lookups_return_every_members_rows(con, uid):
    person, members, row, tags, timeline = api._exec_360(con, _plan(), uid, 5)
    stitched = uid in ("U002990", "C000010")
    assert members == (["C000010", "C002500", "U002990"] if stitched else [uid])
    assert person == ("C000010" if stitched else uid) and row["user_id"] == person
    got = sorted(((e["order_id"], e["time"]) for e in timeline), key=lambda x: (x[1], x[0]), reverse=True)
    want = _reference(con, members, 5)
    assert [g[0] for g in got] == [w[0] for w in sorted(want, key=lambda x: (x[1], x[0]), reverse=True)]
    want_tags = con.execute("SELECT tag_group, tag_name, tag_value FROM customer_tags WHERE user_id IN "
                            "(SELECT unnest($ids)) ORDER BY ALL", {"ids": members}).fetchall()
    assert sorted((t["tag_group"], t["tag_name"], t["tag_value"]) for t in tags) == want_tags
    assert len(tags) == len(members)


def test_row_filter_hides_members_and_large_persons_are_built_uncached(con):
    # a row filter that hides one member: the person is still shown, without that member's rows
    plan = _plan(visible="SELECT * FROM customer_profile WHERE user_id <> 'C002500'")
    _, members, _, _, timeline = api._exec_360(con, plan, "C000010", 50)
    assert members == ["C000010"]  # U002990 has no profile row, so the filter (on customers) does not list it
    assert {e["order_id"] for e in timeline} == {r[0] for r in _reference(con, ["C000010"], 50)}
    # more members than the per-plan cache keeps: the query is built for the call and not kept
    k = api._MAX_CACHED_K + 3
    ids = [f"C{i:06d}" for i in range(0, 3 * k, 3)]
    sql = _plan().members_sql("timeline", k)
    rows = con.execute(sql, {**api._member_params(ids), "n": 500}).fetchall()
    assert sorted(json.loads(p)["order_id"] for _, _, p in rows) == sorted(
        r[0] for r in _reference(con, ids, 500))
    assert len(rows) == 4 * k


def test_member_queries_are_equality_lookups(con):
    sql = _plan().members_sql("timeline", 3)
    assert "ANY(" not in sql and " IN " not in sql.upper().replace("UNION ALL", "")
    assert sql.count("g.user_id = $m") == 3
    plan = _plan()
    assert plan.members_sql("tags", 2) is plan.members_sql("tags", 2)  # built once per member count


@pytest.mark.parametrize("uid", ["U002990", "C001234", "nobody"])
def test_parallel_timeline_gives_the_sequential_answer_and_audits_once_found(con, uid):
    """The server runs the timeline on a second cursor in a worker thread while the profile and tags run,
    and calls on_found (the audit record) only when the profile row exists, before returning."""
    calls: list[str] = []
    seq = api._exec_360(con.cursor(), _plan(), uid, 5)
    par = api._exec_360(con.cursor(), _plan(), uid, 5, con.cursor(), on_found=calls.append)
    assert par == seq
    assert calls == ([] if uid == "nobody" else [seq[0]])
    if uid != "nobody":
        assert par[4]  # a timeline came back from the worker


def test_audit_record_is_written_before_the_view_returns_and_fails_it_closed(con):
    """on_found (the audit record) runs before the view returns, also while the timeline runs on a second
    cursor, and a record that cannot be written fails the view, with and without that cursor."""
    import time

    from custlens.errors import AuditError

    written: list[str] = []

    def slow_record(person: str) -> None:
        time.sleep(0.2)  # a slow fsync: the view must wait for it, not return without it
        written.append(person)

    seq = api._exec_360(con.cursor(), _plan(), "C000010", 5)
    par = api._exec_360(con.cursor(), _plan(), "C000010", 5, con.cursor(), on_found=slow_record)
    assert par == seq and written == ["C000010"]

    def refused(person: str) -> None:
        raise AuditError("disk full", where="audit_log", fix="free disk space")

    with pytest.raises(AuditError):
        api._exec_360(con.cursor(), _plan(), "C001234", 5, con.cursor(), on_found=refused)
    with pytest.raises(AuditError):
        api._exec_360(con.cursor(), _plan(), "C001234", 5, on_found=refused)


def test_visible_members_read_only_the_members_and_agree_with_the_filter_outside(con):
    """The row-filter check narrows the governed customers' source (the `_gov_src` CTE governed.py writes) to the
    members' rows, as lone user_id equalities DuckDB answers from the index; same ids as the filter outside,
    for members the filter hides, members not in customers, and a repeated member."""
    import ibis

    from custlens.security.governed import governed
    from custlens.security.policy import Effective

    con.execute("CREATE TABLE customers AS SELECT user_id, CASE WHEN score % 3 = 0 THEN '广东' ELSE '浙江' END "
                "AS province, 'x' AS phone FROM customer_profile ORDER BY user_id")
    con.execute("CREATE INDEX customers_user ON customers (user_id)")
    cust = ibis.duckdb.from_connection(con).table("customers")
    eff = Effective(table="customers", columns={"user_id": "allow", "province": "allow", "phone": "last4"},
                    row_filters=("province IN :provinces",), aggregates_only=False)
    gov = api._gov_sql(governed(cust, eff, {"provinces": ["广东"]}, table_name="customers"))
    assert '"_gov_src"' in gov
    for ids in (["C000003", "C000004", "C000006"], ["C000001"], ["C000009", "U000001", "C000009"], ["nobody"]):
        k = len(ids)
        params = api._member_params(ids)
        narrowed = api._visible_members(gov, k)
        assert "MATERIALIZED" in narrowed and narrowed.count("user_id = $m") == k
        outside = f"SELECT g.user_id FROM ({api._by_members(gov, k)}) AS g"
        got = sorted(r[0] for r in con.execute(narrowed, params).fetchall())
        assert got == sorted(r[0] for r in con.execute(outside, params).fetchall())
        assert set(got) == {x for x in ids if x.startswith("C") and int(x[1:]) % 3 == 0}
    # a governed SQL of another shape keeps the filter outside
    other = "SELECT * FROM customer_profile WHERE user_id <> 'C002500'"
    assert api._visible_members(other, 2) == f"SELECT g.user_id FROM ({api._by_members(other, 2)}) AS g"
