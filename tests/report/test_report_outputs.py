"""Report outputs: offline HTML, A4 PDF with headings rendered to PNG, xlsx sheets, run folder and reports table."""

from __future__ import annotations

import json
import re
import subprocess

import openpyxl
from pypdf import PdfReader

from custlens.report.build import write_report

HEADINGS_ZH = ["一、目标与范围", "二、数据来源与处理", "三、指标体系", "四、分维度发现", "五、客户分群",
               "六、关键发现", "七、行动建议", "九、局限与展望"]


def test_report_html_is_self_contained(full_zh):
    html = next(p for p in full_zh.files if p.suffix == ".html").read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?https?://""", html)
    assert "vegaEmbed" in html
    for h in HEADINGS_ZH:
        assert h in html
    assert 'title="metric:' in html  # hover evidence on each finding


def test_report_pdf_headings_and_pages(full_zh, tmp_path):
    pdf = next(p for p in full_zh.files if p.suffix == ".pdf")
    reader = PdfReader(str(pdf))
    text = "".join(pg.extract_text() for pg in reader.pages)
    for h in HEADINGS_ZH:
        assert h in text, h
    assert f"1 / {len(reader.pages)}" in text  # page numbers
    w, h = reader.pages[0].mediabox.width, reader.pages[0].mediabox.height
    assert abs(float(w) - 595.3) < 2 and abs(float(h) - 841.9) < 2  # A4
    subprocess.run(["pdftoppm", "-png", "-r", "40", "-f", "1", "-l", "3", str(pdf), str(tmp_path / "p")], check=True)
    pngs = sorted(tmp_path.glob("p*.png"))
    assert len(pngs) == 3 and all(p.stat().st_size > 5000 for p in pngs)


def test_report_xlsx_and_run_record(demo_ws, full_zh):
    ws, _ = demo_ws
    xlsx = next(p for p in full_zh.files if p.suffix == ".xlsx")
    wb = openpyxl.load_workbook(xlsx, read_only=True)
    assert wb.sheetnames[0] == "摘要表"
    rows = list(wb["摘要表"].iter_rows(values_only=True))
    assert rows[0][0] == "报告日期" and rows[1][1]
    assert "发现" in wb.sheetnames and "建议" in wb.sheetnames
    run = json.loads((full_zh.folder / "run.json").read_text(encoding="utf-8"))
    assert run["params"]["period"] == "2024-12" and run["params"]["lang"] == "zh"
    row = ws.sql("SELECT period, lang, formats, findings FROM reports WHERE report_id = ?",
                 [full_zh.report_id]).fetchone()
    assert row[:3] == ("2024-12", "zh", "html,pdf,xlsx")
    assert json.loads(row[3])[0]["id"] == full_zh.findings[0].id


def test_report_english(demo_ws):
    ws, truth = demo_ws
    run = write_report(ws, lang="en", period="2024-12", formats=("html",))
    html = run.files[0].read_text(encoding="utf-8")
    for h in ["1. Objective and scope", "4. Findings by dimension", "7. Recommendations", "Appendix"]:
        assert h in html
    dip = next(f for f in run.findings if f.id == "seasonal_dip")
    assert "Aug 2024" in dip.text and "South China" in dip.text
    fixed = re.sub(r"“[^”]*”", "", " ".join(r.action + r.basis + r.owner for r in run.recommendations))
    assert not re.search(r"[\u4e00-\u9fff]", fixed)  # data values (quoted) may be Chinese, template text not
