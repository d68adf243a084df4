"""A workspace with only customers + orders still reports (empty sections say so); actions are evaluated."""

from __future__ import annotations

import custlens
from custlens.report.actions import add_action, evaluate_all
from custlens.report.build import write_report


def test_report_partial_workspace_says_what_is_missing(demo_ws, tmp_path):
    src, _ = demo_ws
    ws = custlens.init(tmp_path / "partial")
    for table in ("customers", "orders"):
        df = src.duck.execute(f'SELECT * FROM "{table}"').df()
        ws.duck.register("_src", df)
        ws.duck.execute(f'INSERT INTO "{table}" BY NAME SELECT * FROM _src')
        ws.duck.unregister("_src")
    run = write_report(ws, lang="zh", formats=("html",))
    html = run.files[0].read_text(encoding="utf-8")
    assert "暂无数据" in html
    assert "数据不足以得出该维度的结论" in html  # funnel / service without events and tickets
    ids = {f.id for f in run.findings}
    assert "seasonal_dip" in ids and "funnel_worst_step" not in ids and "service_satisfaction" not in ids
    assert {"funnel", "service"} <= set(run.skipped)
    ws.close()


def test_report_action_tracking_diff_in_diff(demo_ws):
    ws, _ = demo_ws
    aid = add_action(ws, name="重要价值客户回购券", segment="important_value", start="2024-10-01", end="2024-11-30",
                     kpi="repurchase_rate", target=0.05, owner="市场部")
    aid2 = add_action(ws, name="广东短信唤醒", segment='{"column": "province", "op": "==", "value": "广东"}',
                      start="2024-11-01", end="2024-12-31", kpi="revenue_per_customer", target=10.0, owner="市场部")
    ev = evaluate_all(ws).set_index("action_id")
    for a in (aid, aid2):
        r = ev.loc[a]
        assert r.treated > 0 and r.control > 0
        assert r.ci_low <= r.did <= r.ci_high
        assert r.met == (r.did >= r.target)
        expected = (r.post_treated - r.pre_treated) - (r.post_control - r.pre_control)
        assert abs(r.did - expected) < 1e-9
    run = write_report(ws, lang="en", role="management", formats=("html",))
    html = run.files[0].read_text(encoding="utf-8")
    assert "重要价值客户回购券" in html and "Effect (diff-in-diff)" in html
