"""Self-contained HTML page shell: inline CSS and the Vega bundle, no external requests."""

from __future__ import annotations

import html
from typing import Any

from custlens.report import charts

CSS = """
:root { --ink:#1f2933; --muted:#6b7785; --line:#e3e7ec; --accent:#2f6fbb; --bad:#c0504d; --good:#3a9e6e; }
* { box-sizing: border-box; }
body { font-family: "Noto Sans CJK SC","Noto Sans SC","PingFang SC","Microsoft YaHei",system-ui,sans-serif;
       color: var(--ink); margin: 0; background: #f6f8fa; line-height: 1.55; }
main { max-width: 1080px; margin: 0 auto; padding: 24px 32px 64px; background: white; }
h1 { font-size: 26px; margin: 8px 0 4px; } h2 { font-size: 20px; margin: 36px 0 8px; border-bottom: 2px solid var(--line);
     padding-bottom: 4px; } h3 { font-size: 16px; margin: 20px 0 6px; }
.sub { color: var(--muted); margin: 0 0 16px; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(180px, 1fr)); gap: 12px; margin: 12px 0; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; }
.card .label { color: var(--muted); font-size: 13px; } .card .value { font-size: 22px; font-weight: 600; }
.card .delta.up { color: var(--good); } .card .delta.down { color: var(--bad); } .card .delta { font-size: 13px; }
table { border-collapse: collapse; width: 100%; margin: 8px 0 16px; font-size: 13px; }
th, td { border-bottom: 1px solid var(--line); padding: 5px 8px; text-align: left; vertical-align: top; }
th { background: #f0f3f6; font-weight: 600; } td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.chart { margin: 8px 0 16px; } .note { color: var(--muted); font-size: 13px; }
.finding { border-left: 4px solid var(--accent); padding: 6px 12px; margin: 10px 0; background: #f8fafc; }
.empty { color: var(--muted); font-style: italic; }
footer { color: var(--muted); font-size: 12px; margin-top: 40px; }
@media print { body { background: white; } main { padding: 0; } .chart { page-break-inside: avoid; } }
"""


def esc(x: Any) -> str:
    return html.escape("" if x is None else str(x))


def table_html(rows: list[dict[str, Any]], columns: list[tuple[str, str]], num: set[str] | None = None) -> str:
    """A plain HTML table: columns are (key, header label); `num` keys are right-aligned."""
    num = num or set()
    head = "".join(f'<th class="{"num" if k in num else ""}">{esc(label)}</th>' for k, label in columns)
    body = "".join(
        "<tr>" + "".join(f'<td class="{"num" if k in num else ""}">{esc(r.get(k))}</td>' for k, _ in columns) + "</tr>"
        for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def cards_html(cards: list[dict[str, Any]]) -> str:
    """KPI cards: {label, value, delta (text), direction up|down|None}."""
    out = []
    for c in cards:
        d = c.get("delta")
        dcls = c.get("direction") or ""
        delta = f'<div class="delta {dcls}">{esc(d)}</div>' if d else ""
        out.append(f'<div class="card"><div class="label">{esc(c["label"])}</div>'
                   f'<div class="value">{esc(c["value"])}</div>{delta}</div>')
    return '<div class="cards">' + "".join(out) + "</div>"


def page(title: str, body: str, *, lang: str = "zh", live_charts: bool = True) -> str:
    """The whole document. With live_charts the Vega bundle is inlined (offline, no CDN)."""
    script = f"<script>{charts.js_bundle()}</script>" if live_charts else ""
    return (f'<!DOCTYPE html><html lang="{"zh-CN" if lang == "zh" else "en"}"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{esc(title)}</title>'
            f"<style>{CSS}</style>{script}</head><body><main>{body}</main></body></html>")


class ChartSlot:
    """Numbered chart placeholders: live Vega in HTML, static SVG for PDF."""

    def __init__(self, static: bool = False, lang: str = "zh") -> None:
        self.static = static
        self.n = 0
        self.lang = lang

    def __call__(self, vl_spec: dict[str, Any] | None) -> str:
        if not vl_spec:
            return ""
        self.n += 1
        if self.static:
            return f'<div class="chart">{charts.to_svg(vl_spec, self.lang)}</div>'
        return charts.embed_html(f"chart{self.n}", vl_spec)
