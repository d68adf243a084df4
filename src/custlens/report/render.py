"""Rendering: one document model to self-contained HTML (live charts), PDF (A4, TOC, page numbers, SVG) and xlsx."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from custlens.report.page import ChartSlot, esc, page
from custlens.report.sections import Block

PRINT_CSS = """
@page { size: A4; margin: 16mm 14mm 18mm;
        @bottom-center { content: counter(page) " / " counter(pages); font-size: 9pt; color: #6b7785; } }
body { background: white; font-size: 10pt; } main { max-width: none; padding: 0; }
h2 { page-break-before: auto; } .chart svg { max-width: 100%; height: auto; }
.toc a { color: inherit; text-decoration: none; }
.toc a::after { content: leader('.') target-counter(attr(href), page); }
table { font-size: 8.5pt; } pre { white-space: normal; word-break: break-all; font-size: 6pt; line-height: 1.25;
  color: #4a5561; }
td, th { overflow-wrap: anywhere; } table.summary th { width: 6.5em; white-space: nowrap; }
div[id^="ev-"] th { width: 5em; white-space: nowrap; } .answers { margin: 2px 0 6px; }
.finding, .rec { page-break-inside: avoid; } details > summary { display: none; }
"""

EXTRA_CSS = """
.toc ol { padding-left: 18px; } .toc li { margin: 2px 0; }
.rec { border: 1px solid var(--line); border-radius: 8px; padding: 8px 12px; margin: 10px 0; }
.rec h3 { margin: 2px 0 6px; font-size: 15px; } .rec dl { display: grid; grid-template-columns: 9em 1fr; gap: 2px 10px;
  margin: 0; } .rec dt { color: var(--muted); } .rec dd { margin: 0; }
.finding .meta { color: var(--muted); font-size: 12px; } .badge { display: inline-block; font-size: 11px;
  border: 1px solid var(--line); border-radius: 10px; padding: 0 6px; margin-right: 6px; color: var(--muted); }
pre { background: #f6f8fa; padding: 6px; overflow-x: auto; font-size: 11px; }
"""


def _table(df: pd.DataFrame, max_rows: int = 40) -> str:
    if df is None or df.empty:
        return ""
    df = df.head(max_rows)
    num = {c for c in df.columns if df[c].dtype.kind in "if"}
    head = "".join(f'<th class="{"num" if c in num else ""}">{esc(c)}</th>' for c in df.columns)
    body = []
    for r in df.itertuples(index=False):
        cells = []
        for c, v in zip(df.columns, r, strict=True):
            if c in num and v is not None and not pd.isna(v):
                v = f"{v:,.0f}" if abs(v) >= 100 or float(v).is_integer() else f"{v:,.3f}"
            elif v is None or (not isinstance(v, str) and pd.isna(v)):
                v = "—"
            cells.append(f'<td class="{"num" if c in num else ""}">{esc(v)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def block_html(b: Block, slot: ChartSlot) -> str:
    out = [f'<h2 id="s-{b.key}">{esc(b.title)}</h2>']
    if b.empty:
        out.append(f'<p class="empty">{esc(b.empty)}</p>')
    for p in b.paragraphs:
        out.append(f"<p>{p if p.startswith('<b>') else esc(p)}</p>")
    for x in b.html_extra:
        out.append(slot(x.spec) if hasattr(x, "spec") else x)
    for _, df in b.tables:
        out.append(_table(df))
    for c in b.charts:
        out.append(slot(c))
    out.extend(b.tail)
    return "\n".join(out)


def document(doc: dict[str, Any], *, static: bool) -> str:
    """The full HTML: live Vega charts (static=False) or inline SVG for print (static=True)."""
    lang = doc["lang"]
    slot = ChartSlot(static=static, lang=lang)
    parts = [f"<h1>{esc(doc['title'])}</h1>", f'<p class="sub">{esc(doc["subtitle"])}</p>']
    toc = "".join(f'<li><a href="#s-{b.key}">{esc(b.title)}</a></li>' for b in doc["blocks"])
    parts.append(f'<nav class="toc"><h3>{esc(doc["toc_title"])}</h3><ol>{toc}</ol></nav>')
    for b in doc["blocks"]:
        parts.append(block_html(b, slot))
    parts.append(f"<footer>{esc(doc['footer'])}</footer>")
    html = page(doc["title"], "\n".join(parts), lang=lang, live_charts=not static)
    css = EXTRA_CSS + (PRINT_CSS if static else "")
    return html.replace("</style>", css + "</style>", 1)


def write_html(doc: dict[str, Any], path: Path) -> Path:
    path.write_text(document(doc, static=False), encoding="utf-8")
    return path


def write_pdf(doc: dict[str, Any], path: Path) -> Path:
    from weasyprint import HTML  # noqa: PLC0415

    HTML(string=document(doc, static=True), base_url=str(path.parent)).write_pdf(str(path))
    return path


def write_xlsx(doc: dict[str, Any], path: Path) -> Path:
    """Workbook: the summary table first, then findings, recommendations, evidence and each section's tables."""
    sheets: list[tuple[str, pd.DataFrame]] = [(doc["sheet_names"]["summary"], doc["summary_table"]),
                                              (doc["sheet_names"]["findings"], doc["findings_table"]),
                                              (doc["sheet_names"]["recs"], doc["recs_table"]),
                                              (doc["sheet_names"]["evidence"], doc["evidence_table"])]
    for b in doc["blocks"]:
        for name, df in b.tables:
            sheets.append((name, df))
    for name, df in doc.get("data_tables", []):
        sheets.append((name, df))
    used: set[str] = set()
    with pd.ExcelWriter(path, engine="xlsxwriter") as xw:
        wb = xw.book
        wrap = wb.add_format({"text_wrap": True, "valign": "top"})
        head = wb.add_format({"bold": True, "bg_color": "#f0f3f6", "text_wrap": True, "valign": "top"})
        for name, df in sheets:
            if df is None or df.empty:
                continue
            sn = _sheet_name(name, used)
            df = df.copy()
            for c in df.columns:
                if df[c].dtype == object:
                    df[c] = [json.dumps(v, ensure_ascii=False, default=str) if isinstance(v, (list, dict)) else v
                             for v in df[c]]
            df.to_excel(xw, sheet_name=sn, index=False)
            sh = xw.sheets[sn]
            for i, c in enumerate(df.columns):
                sh.write(0, i, str(c), head)
                width = min(60, max(10, int(df[c].astype(str).str.len().quantile(0.9) if len(df) else 10) + 2))
                sh.set_column(i, i, width, wrap)
            sh.freeze_panes(1, 0)
    return path


def _sheet_name(name: str, used: set[str]) -> str:
    base = "".join(ch for ch in str(name) if ch not in "[]:*?/\\")[:28] or "sheet"
    sn, i = base, 2
    while sn in used:
        sn, i = f"{base[:26]}_{i}", i + 1
    used.add(sn)
    return sn
