"""Funnel semantics, one small hand-computed case per PostHog rule (real DuckDB workspace)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from custlens.analytics import funnel as funnel_mod
from custlens.analytics.funnel import funnel
from custlens.errors import CustlensError

T0 = datetime(2024, 3, 1, 10, 0, 0)


@pytest.fixture(autouse=True, params=["sorted", "windows"])
def funnel_path(request, monkeypatch):
    """Every rule holds on both DuckDB paths: the one-sort path ordered funnels take, and the window
    path (the definition, which Spark and the other orders use)."""
    monkeypatch.setattr(funnel_mod, "_FORCE_WINDOWS", request.param == "windows")
    return request.param


def _ev(ws, rows):
    """rows: (user, event, seconds after T0[, platform[, channel]])."""
    data = []
    for i, r in enumerate(rows):
        user, event, sec = r[0], r[1], r[2]
        plat = r[3] if len(r) > 3 else None
        chan = r[4] if len(r) > 4 else None
        data.append((f"e{i:04d}", user, event, T0 + timedelta(seconds=sec), plat, chan))
    ws.duck.executemany(
        "insert into events (event_id, user_id, event, event_time, platform, channel) values (?,?,?,?,?,?)", data)


def counts(res):
    return [int(c) for c in res.table["count"]]


DAY = 86400


def test_funnel_window_is_inclusive(ws):
    _ev(ws, [("a", "view", 0), ("a", "cart", DAY), ("a", "order", 14 * DAY),
             ("b", "view", 0), ("b", "cart", DAY), ("b", "order", 14 * DAY + 1)])
    assert counts(funnel(ws, "view,cart,order", window="14d")) == [2, 2, 1]


def test_funnel_window_measured_from_first_step(ws):
    # order is 2 days after cart but 15 days after the attempt's first step
    _ev(ws, [("a", "view", 0), ("a", "cart", 13 * DAY), ("a", "order", 15 * DAY)])
    assert counts(funnel(ws, "view,cart,order", window="14d")) == [1, 1, 0]


def test_funnel_latest_step1_anchors_attempt(ws):
    # the day-10 view anchors: cart at day 12 is inside a 7-day window from it (not from day 0)
    _ev(ws, [("a", "view", 0), ("a", "view", 10 * DAY), ("a", "cart", 12 * DAY)])
    res = funnel(ws, "view,cart", window="7d")
    assert counts(res) == [1, 1]
    assert res.table["average_seconds_to_convert"].iloc[1] == pytest.approx(2 * DAY)


def test_funnel_best_attempt_furthest_then_earliest(ws):
    # attempt 1 reaches cart only; attempt 2 completes: the complete one counts.
    # b completes twice: the first completion (100 s) is the one timed, not the later 10 s one.
    _ev(ws, [("a", "view", 0), ("a", "cart", 50), ("a", "view", 1000), ("a", "cart", 1100), ("a", "order", 1300),
             ("b", "view", 0), ("b", "cart", 100), ("b", "view", 5000), ("b", "cart", 5010)])
    res = funnel(ws, "view,cart,order", window="1d")
    assert counts(res) == [2, 2, 1]
    # a: cart 100 s after its second view; b: 100 s → average 100
    assert res.table["average_seconds_to_convert"].iloc[1] == pytest.approx(100)
    assert res.table["average_seconds_to_convert"].iloc[2] == pytest.approx(200)


def test_funnel_exclusion_removes_person(ws):
    _ev(ws, [("a", "view", 0), ("a", "refund", 10), ("a", "cart", 20),
             ("b", "view", 0), ("b", "cart", 20)])
    res = funnel(ws, "view,cart", window="1d", exclusions=[("refund", 1, 2)])
    assert counts(res) == [1, 1]  # a is out of the funnel entirely, even at step 1


def test_funnel_exclusion_later_clean_attempt_counts(ws):
    _ev(ws, [("a", "view", 0), ("a", "refund", 10), ("a", "cart", 20),
             ("a", "view", 100), ("a", "cart", 160)])
    res = funnel(ws, "view,cart", window="1d", exclusions=["refund:1:2"])
    assert counts(res) == [1, 1]
    assert res.table["average_seconds_to_convert"].iloc[1] == pytest.approx(60)


def test_funnel_exclusion_clean_attempt_not_as_far_does_not_rescue(ws):
    # the excluded attempt reaches cart; the later clean attempt only reaches view → person removed
    _ev(ws, [("a", "view", 0), ("a", "refund", 10), ("a", "cart", 20), ("a", "view", 100)])
    assert counts(funnel(ws, "view,cart", window="1d", exclusions=["refund:1:2"])) == [0, 0]


def test_funnel_exclusion_outside_its_steps_is_ignored(ws):
    # refund happens after cart: the exclusion only covers steps 1→2
    _ev(ws, [("a", "view", 0), ("a", "cart", 20), ("a", "refund", 30), ("a", "order", 40)])
    assert counts(funnel(ws, "view,cart,order", window="1d", exclusions=["refund:1:2"])) == [1, 1, 1]


def test_funnel_same_timestamp_counts_in_step_order(ws):
    # cart and view share a timestamp: the cart still satisfies step 2 (inserted first on purpose)
    _ev(ws, [("a", "cart", 0), ("a", "view", 0)])
    assert counts(funnel(ws, "view,cart")) == [1, 1]


def test_funnel_zero_second_conversions_left_out_of_times(ws):
    _ev(ws, [("a", "view", 0), ("a", "cart", 0),
             ("b", "view", 0), ("b", "cart", 100),
             ("c", "view", 0), ("c", "cart", 300)])
    res = funnel(ws, "view,cart")
    assert counts(res) == [3, 3]
    assert res.table["average_seconds_to_convert"].iloc[1] == pytest.approx(200)  # not 400/3
    assert res.table["median_seconds_to_convert"].iloc[1] == pytest.approx(200)  # not 100


def test_funnel_strict_other_event_breaks_chain(ws):
    _ev(ws, [("a", "view", 0), ("a", "search", 10), ("a", "cart", 20),
             ("b", "view", 0), ("b", "cart", 20)])
    assert counts(funnel(ws, "view,cart", order="strict")) == [2, 1]
    assert counts(funnel(ws, "view,cart", order="ordered")) == [2, 2]


def test_funnel_unordered_any_order_within_window(ws):
    _ev(ws, [("a", "order", 0), ("a", "cart", 10), ("a", "view", 30),
             ("b", "order", 0), ("b", "view", 2 * DAY)])
    res = funnel(ws, "view,cart,order", order="unordered", window="1d")
    assert counts(res) == [2, 1, 1]
    assert counts(funnel(ws, "view,cart,order", order="ordered", window="1d")) == [2, 0, 0]
    # a's sorted times 0, 10, 30 → gaps 10 and 20
    assert res.table["average_seconds_to_convert"].tolist()[1:] == [pytest.approx(10), pytest.approx(20)]


def test_funnel_drop_off_and_conversions(ws):
    _ev(ws, [("a", "view", 0), ("a", "cart", 10), ("a", "order", 20),
             ("b", "view", 0), ("b", "cart", 10),
             ("c", "view", 0), ("d", "view", 0)])
    tbl = funnel(ws, "view,cart,order").table
    assert tbl["count"].tolist() == [4, 2, 1]
    assert tbl["drop_off"].tolist() == [0, 2, 1]
    assert tbl["conversion_from_first"].tolist() == pytest.approx([1.0, 0.5, 0.25])
    assert tbl["conversion_from_previous"].tolist() == pytest.approx([1.0, 0.5, 0.5])


def _bd(res):
    return {k: [int(c) for c in v["count"]] for k, v in res.breakdowns.items()}


ATTR_ROWS = [("a", "view", 0, "APP"), ("a", "cart", 10, "web"), ("a", "order", 20, "web"),
             ("b", "view", 0, "APP"), ("b", "cart", 10, "APP"), ("b", "order", 20, "APP")]


def test_funnel_attribution_first_touch(ws):
    _ev(ws, ATTR_ROWS)
    assert _bd(funnel(ws, "view,cart,order", breakdown="platform", attribution="first_touch")) == {"APP": [2, 2, 2]}


def test_funnel_attribution_last_touch(ws):
    _ev(ws, ATTR_ROWS)
    assert _bd(funnel(ws, "view,cart,order", breakdown="platform", attribution="last_touch")) == {
        "APP": [1, 1, 1], "web": [1, 1, 1]}


def test_funnel_attribution_step_n(ws):
    _ev(ws, ATTR_ROWS + [("c", "view", 0, "web")])
    # value at step 2 (cart); c never reaches step 2 → "(none)"
    assert _bd(funnel(ws, "view,cart,order", breakdown="platform", attribution="step:2")) == {
        "APP": [1, 1, 1], "web": [1, 1, 1], "(none)": [1, 0, 0]}


def test_funnel_attribution_all_events(ws):
    _ev(ws, ATTR_ROWS)
    # a's steps do not share one value: under APP it only has the view; no web view → no web entry
    res = funnel(ws, "view,cart,order", breakdown="platform", attribution="all_events")
    assert _bd(res) == {"APP": [2, 1, 1]}
    assert counts(res) == [2, 2, 2]  # the overall funnel ignores the breakdown


def test_funnel_breakdown_by_customer_attribute(ws):
    _ev(ws, [("a", "view", 0), ("a", "cart", 5), ("b", "view", 0), ("c", "view", 0)])
    ws.duck.executemany("insert into customers (user_id, province) values (?, ?)",
                        [("a", "广东"), ("b", "广东"), ("c", "浙江")])
    assert _bd(funnel(ws, "view,cart", breakdown="province")) == {"广东": [2, 1], "浙江": [1, 0]}


def test_funnel_step_property_filter_and_anonymous_person(ws):
    _ev(ws, [("a", "view", 0, "APP"), ("a", "cart", 5), ("b", "view", 0, "web"), ("b", "cart", 5)])
    ws.duck.execute("insert into events (event_id, anonymous_id, event, event_time, platform) values "
                    "('x1', 'anon1', 'view', ?, 'APP'), ('x2', 'anon1', 'cart', ?, NULL)",
                    [T0, T0 + timedelta(seconds=9)])
    res = funnel(ws, [{"event": "view", "where": {"platform": "APP"}}, "cart"])
    assert counts(res) == [2, 2]


def test_funnel_date_range(ws):
    _ev(ws, [("a", "view", 0), ("a", "cart", 5), ("b", "view", 3 * DAY), ("b", "cart", 3 * DAY + 5)])
    res = funnel(ws, "view,cart", date_from="2024-03-01", date_to="2024-03-02")
    assert counts(res) == [1, 1]


def test_funnel_user_errors(ws):
    _ev(ws, [("a", "view", 0)])
    with pytest.raises(CustlensError):
        funnel(ws, "view")
    with pytest.raises(CustlensError):
        funnel(ws, "view,cart", exclusions=["refund:2:1"])
    with pytest.raises(CustlensError):
        funnel(ws, "view,cart", breakdown="no_such_column")
    with pytest.raises(CustlensError):
        funnel(ws, "view,cart", attribution="step:9")


def test_funnel_cli_json_and_chart(ws, monkeypatch):
    import typer
    from typer.testing import CliRunner

    from custlens.analytics import funnel as funnel_mod

    app = typer.Typer()
    funnel_mod.register_cli(app)
    app.command("noop")(lambda: None)  # keep typer in multi-command mode
    _ev(ws, [("a", "view", 0, "APP"), ("a", "cart", 5, "APP"), ("b", "view", 0, "web")])
    ws.close()
    monkeypatch.setenv("CUSTLENS_WORKSPACE", str(ws.root))
    r = CliRunner().invoke(app, ["funnel", "--steps", "view,cart", "--breakdown", "platform", "--format", "json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert set(doc) == {"steps", "breakdowns", "params"}
    assert [s["count"] for s in doc["steps"]] == [2, 1]
    assert set(doc["steps"][0]) == {"step", "count", "conversion_from_first", "conversion_from_previous",
                                    "median_seconds_to_convert", "average_seconds_to_convert", "drop_off"}
    assert doc["breakdowns"]["APP"][1]["count"] == 1
    spec = funnel(ws, "view,cart").chart()
    assert spec["mark"]["type"] == "bar" if isinstance(spec["mark"], dict) else spec["mark"] == "bar"


def test_funnel_same_timestamp_step1_events_latest_anchors(ws):
    # two views in the same millisecond (ordered by event_id): the later one anchors, so first_touch
    # attribution is deterministic (it used to depend on the engine's tie order)
    _ev(ws, [("a", "view", 0, "APP"), ("a", "view", 0, "web"), ("a", "cart", 10, "web")])
    for order in ("ordered", "strict"):
        res = funnel(ws, "view,cart", order=order, breakdown="platform", attribution="first_touch")
        assert _bd(res) == {"web": [1, 1]}, order


def test_funnel_breakdown_ties_sorted_by_value(ws):
    _ev(ws, [("a", "view", 0, "web"), ("b", "view", 0, "APP"), ("c", "view", 0, "mini")])
    res = funnel(ws, "view,cart", breakdown="platform")
    assert list(res.breakdowns) == ["APP", "mini", "web"]


def test_funnel_step1_only_person_attributed_to_first_step1_event(ws):
    # no attempt gets past step 1: the earliest view is the best attempt (first to reach step 1)
    _ev(ws, [("a", "view", 0, "APP"), ("a", "view", 100, "web"), ("a", "view", 200, "web")])
    res = funnel(ws, "view,cart", breakdown="platform", attribution="first_touch")
    assert _bd(res) == {"APP": [1, 0]}


def test_aggregate_by_session_counts_each_session(ws):
    """A person who converts in their second session is one converted person but 1 of 2 sessions."""
    from datetime import datetime

    from tests.conftest import insert_rows

    from custlens.analytics.funnel import funnel

    t0 = datetime(2024, 5, 1, 10)
    rows = [("e1", "u1", "s1", "view", 0), ("e2", "u1", "s2", "view", 3600), ("e3", "u1", "s2", "order", 3700),
            ("e4", "u2", "s3", "view", 0)]
    insert_rows(ws, "events", [{"event_id": e, "user_id": u, "session_id": s, "event": ev,
                                "event_time": t0.replace(second=0) + __import__("datetime").timedelta(seconds=dt),
                                "platform": "APP"} for e, u, s, ev, dt in rows])
    by_person = funnel(ws, ["view", "order"]).table["count"].tolist()
    by_session = funnel(ws, ["view", "order"], aggregate_by="session", breakdown="platform")
    assert by_person == [2, 1]
    assert by_session.table["count"].tolist() == [3, 1]
    assert by_session.breakdowns["APP"]["count"].tolist() == [3, 1]


def test_funnel_times_keep_milliseconds(ws):
    """Sub-second timestamps: 0.5 s then 1.25 s after the first step (DuckDB's epoch carries the
    fraction; it must not be counted twice)."""
    rows = [("e1", "a", "view", T0 + timedelta(milliseconds=500)), ("e2", "a", "cart", T0 + timedelta(seconds=1)),
            ("e3", "a", "order", T0 + timedelta(milliseconds=2250))]
    ws.duck.executemany("insert into events (event_id, user_id, event, event_time) values (?,?,?,?)", rows)
    res = funnel(ws, "view,cart,order", window="1d")
    assert counts(res) == [1, 1, 1]
    assert list(res.table["median_seconds_to_convert"].iloc[1:]) == [0.5, 1.25]
    # the window is measured from the first step to the millisecond
    assert counts(funnel(ws, "view,cart,order", window=timedelta(milliseconds=1750))) == [1, 1, 1]
    assert counts(funnel(ws, "view,cart,order", window=timedelta(milliseconds=1740))) == [1, 1, 0]
