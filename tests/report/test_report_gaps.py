"""Charts for every analysis the report names, text-based complaint themes, held-out model evaluation from
model_runs, and configured questions steering the ranking."""

from __future__ import annotations

import json
import re

import pytest

from custlens.report.insights import QUESTION_BOOST, rank, tag_questions


def _html(run) -> str:
    return next(p for p in run.files if p.suffix == ".html").read_text(encoding="utf-8")


def test_report_has_the_named_charts(full_zh):
    html = _html(full_zh)
    for title in ("工单数：星期 × 小时", "首购后第N个月再次购买的比例", "会话路径逐步流向", "流失风险分布（客户数）",
                  "预测CLV分布", "各类工单文字情感占比", "投诉主题（占负面工单比例）"):
        assert title in html, title
    specs = [json.loads(m) for m in re.findall(r'vegaEmbed\("#chart\d+", (\{.*?\}), \{"actions"', html)]
    assert specs and all("$schema" in s for s in specs)


def test_report_complaint_theme_finding(demo_ws, full_zh):
    ws, _ = demo_ws
    f = next(f for f in full_zh.findings if f.id == "complaint_themes")
    n = f.numbers
    assert n["theme_label"] in f.text and f"{n['theme_share'] * 100:.1f}%" in f.text
    assert f"{n['theme_satisfaction']:.2f}" in f.text and f"{n['satisfaction_all']:.2f}" in f.text
    # the satisfaction it is compared with: all rated tickets with text in the 12 months up to the period end
    sat = ws.sql("SELECT avg(satisfaction) FROM tickets WHERE text IS NOT NULL AND trim(text) <> '' "
                 "AND created_time >= TIMESTAMP '2024-01-01' AND created_time < TIMESTAMP '2025-01-01'").fetchone()[0]
    assert n["satisfaction_all"] == pytest.approx(sat, rel=1e-9)
    assert n["theme_customers"] >= ws.config.report.min_group_size
    assert n["theme_satisfaction"] < n["satisfaction_all"]  # complaints go with lower satisfaction


def test_report_limitations_show_held_out_evaluation(demo_ws, full_zh):
    ws, _ = demo_ws
    html = _html(full_zh)
    lim = html[html.index('id="s-limits"'):html.index('id="s-appendix"')]
    m = json.loads(ws.sql("SELECT metrics FROM model_runs WHERE model = 'churn' ORDER BY created_at DESC "
                          "LIMIT 1").fetchone()[0])
    assert f"ROC AUC {m['roc_auc']:.3f}（基线逻辑回归 {m['baseline']['roc_auc']:.3f}）" in lim
    assert f"PR AUC {m['pr_auc']:.3f}" in lim
    hit = json.loads(ws.sql("SELECT metrics FROM model_runs WHERE model = 'recommend.popularity' ORDER BY "
                            "created_at DESC LIMIT 1").fetchone()[0])["hit_rate@10"]
    assert f"热门基线 {hit * 100:.1f}%" in lim
    assert "MAPE" in lim and "留出最后13周" in lim
    assert "log_likelihood" not in lim and "brier" not in lim.lower()


def test_report_questions_steer_the_ranking(full_zh):
    html = _html(full_zh)
    scope = html[html.index('id="s-scope"'):html.index('id="s-sources"')]
    for i, f in enumerate(full_zh.findings, 1):
        if "raise_repurchase" in f.answers or "cut_high_value_churn" in f.answers:
            assert f'href="#f-{f.id}">第{i}名</a>' in scope
    seg = next(f for f in full_zh.findings if f.id == "segment_shift")
    assert set(seg.answers) == {"raise_repurchase", "cut_high_value_churn"}
    assert seg.score == pytest.approx(seg.base_score * QUESTION_BOOST)
    # asking about channel spend lifts the channel findings above what they were
    fs = list(full_zh.findings)
    before = [f.id for f in fs].index("channel_roi_worst")
    tag_questions(fs, ["optimize_channel_spend"])
    after = [f.id for f in rank(fs)].index("channel_roi_worst")
    tag_questions(fs, ["raise_repurchase", "cut_high_value_churn"])
    assert after < before
