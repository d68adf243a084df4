"""Role packs run as the role (governed, aggregates only) and show only that role's sections."""

from __future__ import annotations

import re

import pytest

from custlens.report.build import write_report


@pytest.mark.parametrize("role,must,must_not", [
    ("management", ["六、关键发现", "七、行动建议"], ["五、客户分群", "三、指标体系"]),
    ("marketing", ["五、客户分群", "七、行动建议", "新客同期群复购", "流失风险分布"], ["二、数据来源与处理"]),
    ("operations", ["转化漏斗", "渠道", "会话路径逐步流向", "新客同期群复购"], ["五、客户分群"]),
    ("service", ["客服与满意度", "投诉主题", "工单数：星期 × 小时", "各类工单文字情感占比"], ["五、客户分群", "转化漏斗"]),
])
def test_report_role_pack(demo_ws, management_zh, role, must, must_not):
    ws, _ = demo_ws
    run = management_zh if role == "management" else write_report(ws, lang="zh", role=role, formats=("html",))
    html = run.files[0].read_text(encoding="utf-8")
    for h in must:
        assert h in html, h
    for h in must_not:
        assert h not in html, h
    assert ws.gov is None and ws.actor is None  # the role was only worn for the run
    if role == "service":
        assert all(f.section in ("service", "churn") for f in run.findings)
        assert "complaint_themes" in {f.id for f in run.findings}


def test_report_management_has_no_customer_rows_or_pii(demo_ws, management_zh):
    ws, _ = demo_ws
    run = management_zh
    html = re.sub(r"<script>.*?</script>", "", run.files[0].read_text(encoding="utf-8"), count=1, flags=re.S)
    ids = [r[0] for r in ws.sql("SELECT user_id FROM customers LIMIT 200").fetchall()]
    assert not any(i in html for i in ids)
    assert not re.search(r"1[3-9]\d\*{4}\d{4}|1[3-9]\d{9}", html)  # masked or clear mobile numbers
    names = [r[0] for r in ws.sql("SELECT name FROM customers WHERE name IS NOT NULL LIMIT 50").fetchall()]
    assert not any(n in html for n in names if n and len(n) >= 3)
    import openpyxl

    wb = openpyxl.load_workbook(run.files[1], read_only=True)
    cells = " ".join(str(v) for sh in wb.worksheets for row in sh.iter_rows(values_only=True) for v in row if v)
    assert not any(i in cells for i in ids)
