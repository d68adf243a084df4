"""Chart building blocks: Vega-Lite specs via Altair, rendered to SVG/PNG without a browser.

The same spec is embedded live in HTML pages (with the Vega bundle inlined, so pages work offline)
and rendered to static SVG for PDF.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import altair as alt
import pandas as pd

FONT = "Noto Sans CJK SC, Noto Sans SC, PingFang SC, Microsoft YaHei, sans-serif"
PALETTE = ["#2f6fbb", "#e07b39", "#3a9e6e", "#c0504d", "#8064a2", "#4bacc6", "#9c9c9c", "#d4a72c"]

alt.data_transformers.disable_max_rows()


def _config(chart: alt.Chart | alt.LayerChart, width: int = 560, height: int = 260) -> Any:
    return (
        chart.properties(width=width, height=height)
        .configure(font=FONT, background="white")
        .configure_view(stroke=None)
        .configure_axis(labelFont=FONT, titleFont=FONT, grid=True, gridColor="#eeeeee", domainColor="#888888",
                        labelFontSize=11, titleFontSize=12)
        .configure_legend(labelFont=FONT, titleFont=FONT, labelFontSize=11)
        .configure_title(font=FONT, fontSize=14, anchor="start")
        .configure_range(category=PALETTE)
    )


def spec(chart: Any) -> dict[str, Any]:
    """The Vega-Lite dict of an Altair chart (JSON-safe)."""
    return json.loads(chart.to_json(default=str))


def line(df: pd.DataFrame, x: str, y: str, *, color: str | None = None, title: str = "", x_title: str = "",
         y_title: str = "", y_format: str = ",.0f", temporal: bool = True, width: int = 560,
         height: int = 260, lang: str = "en", monthly: bool = False) -> dict[str, Any]:
    """Trend line (optionally one line per colour group); monthly data gets month ticks."""
    xtype = "T" if temporal else "O"
    axis = alt.Axis(format="%Y-%m" if lang != "zh" else "%Y年%-m月", tickCount="month", labelAngle=-40) \
        if (temporal and monthly) else alt.Axis()
    enc: dict[str, Any] = {
        "x": alt.X(f"{x}:{xtype}", title=x_title, axis=axis),
        "y": alt.Y(f"{y}:Q", title=y_title, axis=alt.Axis(format=y_format)),
        "tooltip": [alt.Tooltip(f"{x}:{xtype}", format="%Y-%m") if (temporal and monthly) else
                    alt.Tooltip(f"{x}:{xtype}"), alt.Tooltip(f"{y}:Q", format=y_format)],
    }
    if color:
        enc["color"] = alt.Color(f"{color}:N", title="")
        enc["tooltip"].append(alt.Tooltip(f"{color}:N"))
    ch = alt.Chart(df, title=title).mark_line(point=True, strokeWidth=2).encode(**enc)
    return spec(_config(ch, width, height))


def grouped_bar(df: pd.DataFrame, x: str, y: str, group: str, *, title: str = "", x_title: str = "",
                y_title: str = "", y_format: str = ",.0f", width: int = 560, height: int = 240, lang: str = "en",
                horizontal: bool = False) -> dict[str, Any]:
    """Bars of `y` per category `x`, side by side per `group` (xOffset / yOffset)."""
    cat = alt.Y if horizontal else alt.X
    val = alt.X if horizontal else alt.Y
    enc: dict[str, Any] = {
        ("y" if horizontal else "x"): cat(f"{x}:N", title=x_title, sort=None, axis=alt.Axis(labelLimit=260,
                                                                                         labelAngle=0)),
        ("x" if horizontal else "y"): val(f"{y}:Q", title=y_title, axis=alt.Axis(format=y_format)),
        ("yOffset" if horizontal else "xOffset"): alt.XOffset(f"{group}:N") if not horizontal
        else alt.YOffset(f"{group}:N"),
        "color": alt.Color(f"{group}:N", title=""),
        "tooltip": [alt.Tooltip(f"{x}:N"), alt.Tooltip(f"{group}:N"), alt.Tooltip(f"{y}:Q", format=y_format)],
    }
    ch = alt.Chart(df, title=title).mark_bar().encode(**enc)
    return spec(_config(ch, width, height))


def treemap_bars(df: pd.DataFrame, category: str, size: str, share: str, *, title: str = "", width: int = 560,
                 height: int = 260) -> dict[str, Any]:
    """Segment sizes as horizontal bars coloured by value share (a print-friendly treemap stand-in)."""
    ch = alt.Chart(df, title=title).mark_bar().encode(
        y=alt.Y(f"{category}:N", sort="-x", title="", axis=alt.Axis(labelLimit=200)),
        x=alt.X(f"{size}:Q", title="", axis=alt.Axis(format=",.0f")),
        color=alt.Color(f"{share}:Q", scale=alt.Scale(scheme="blues"), title="", legend=alt.Legend(format=".0%")),
        tooltip=[alt.Tooltip(f"{category}:N"), alt.Tooltip(f"{size}:Q", format=",.0f"),
                 alt.Tooltip(f"{share}:Q", format=".1%")])
    return spec(_config(ch, width, height))


def bar(df: pd.DataFrame, x: str, y: str, *, color: str | None = None, title: str = "", x_title: str = "",
        y_title: str = "", horizontal: bool = False, sort: str | None = "-y", y_format: str = ",.0f",
        width: int = 560, height: int = 260, highlight: str | None = None) -> dict[str, Any]:
    """Bar chart; horizontal bars for long category labels."""
    cat, val = (y, x) if horizontal else (x, y)
    sort_arg = None if sort is None else (("-x" if horizontal else "-y") if sort == "-y" else sort)
    cat_enc = alt.Y if horizontal else alt.X
    val_enc = alt.X if horizontal else alt.Y
    longest = max((len(str(v)) for v in df[cat]), default=0)
    angle = 0 if horizontal or longest * max(1, len(df)) <= width / 12 or longest <= 6 else -35
    enc: dict[str, Any] = {
        ("y" if horizontal else "x"): cat_enc(f"{cat}:N", title=x_title if not horizontal else y_title,
                                                 sort=sort_arg, axis=alt.Axis(labelLimit=220, labelAngle=angle)),
        ("x" if horizontal else "y"): val_enc(f"{val}:Q", title=y_title if not horizontal else x_title,
                                                 axis=alt.Axis(format=y_format)),
        "tooltip": [alt.Tooltip(f"{cat}:N"), alt.Tooltip(f"{val}:Q", format=y_format)],
    }
    if color:
        enc["color"] = alt.Color(f"{color}:N", title="")
    elif highlight:
        enc["color"] = alt.condition(f"datum['{cat}'] == '{highlight}'", alt.value("#c0504d"), alt.value(PALETTE[0]))
    else:
        enc["color"] = alt.value(PALETTE[0])
    ch = alt.Chart(df, title=title).mark_bar().encode(**enc)
    return spec(_config(ch, width, height))


def donut(df: pd.DataFrame, category: str, value: str, *, title: str = "", width: int = 300,
          height: int = 260) -> dict[str, Any]:
    """Share of a whole (few categories)."""
    ch = alt.Chart(df, title=title).mark_arc(innerRadius=60).encode(
        theta=alt.Theta(f"{value}:Q"), color=alt.Color(f"{category}:N", title=""),
        tooltip=[alt.Tooltip(f"{category}:N"), alt.Tooltip(f"{value}:Q", format=",.0f")])
    return spec(_config(ch, width, height))


def heatmap(df: pd.DataFrame, x: str, y: str, value: str, *, title: str = "", x_title: str = "", y_title: str = "",
            value_format: str = ",.0f", x_sort: list[Any] | None = None, y_sort: list[Any] | None = None,
            width: int = 560, height: int = 260, text: bool = False, scheme: str = "blues",
            label_angle: int = 0) -> dict[str, Any]:
    """Heatmap (weekday × hour, region × metric, retention cohorts)."""
    base = alt.Chart(df, title=title).encode(
        x=alt.X(f"{x}:O", title=x_title, sort=x_sort, axis=alt.Axis(labelAngle=label_angle, labelLimit=160)),
        y=alt.Y(f"{y}:O", title=y_title, sort=y_sort, axis=alt.Axis(labelLimit=200)))
    rect = base.mark_rect().encode(color=alt.Color(f"{value}:Q", title="", scale=alt.Scale(scheme=scheme)),
                                   tooltip=[alt.Tooltip(f"{x}:O"), alt.Tooltip(f"{y}:O"),
                                            alt.Tooltip(f"{value}:Q", format=value_format)])
    ch: Any = rect
    if text:
        ch = rect + base.mark_text(fontSize=10).encode(text=alt.Text(f"{value}:Q", format=value_format))
    return spec(_config(ch, width, height))


def funnel(df: pd.DataFrame, step: str, count: str, *, title: str = "", rate: str | None = None,
           width: int = 560, height: int = 220) -> dict[str, Any]:
    """Funnel as ordered horizontal bars with the conversion labelled."""
    order = list(df[step])
    base = alt.Chart(df, title=title).encode(
        y=alt.Y(f"{step}:N", sort=order, title=""), x=alt.X(f"{count}:Q", title="", axis=alt.Axis(format=",.0f")))
    bars = base.mark_bar(color=PALETTE[0])
    ch: Any = bars
    if rate:
        ch = bars + base.mark_text(align="left", dx=4).encode(text=alt.Text(f"{rate}:Q", format=".1%"))
    return spec(_config(ch, width, height))


def histogram(df: pd.DataFrame, value: str, *, title: str = "", x_title: str = "", bins: int = 30,
              width: int = 560, height: int = 220) -> dict[str, Any]:
    """Distribution of one numeric column."""
    ch = alt.Chart(df, title=title).mark_bar(color=PALETTE[0]).encode(
        x=alt.X(f"{value}:Q", bin=alt.Bin(maxbins=bins), title=x_title), y=alt.Y("count():Q", title=""))
    return spec(_config(ch, width, height))


def ordered_bars(df: pd.DataFrame, category: str, value: str, *, order: list[str], colors: list[str] | None = None,
                 title: str = "", x_title: str = "", y_title: str = "", y_format: str = ",.0f",
                 label: str | None = None, width: int = 560, height: int = 200) -> dict[str, Any]:
    """Horizontal bars in a fixed order (risk bands, score buckets), each with its own colour and a value label."""
    scale = alt.Scale(domain=order, range=colors) if colors else alt.Scale(domain=order, range=PALETTE)
    base = alt.Chart(df, title=title).encode(
        y=alt.Y(f"{category}:N", sort=order, title=y_title, axis=alt.Axis(labelLimit=220)),
        x=alt.X(f"{value}:Q", title=x_title, axis=alt.Axis(format=y_format)))
    bars = base.mark_bar().encode(color=alt.Color(f"{category}:N", scale=scale, legend=None),
                                  tooltip=[alt.Tooltip(f"{category}:N"), alt.Tooltip(f"{value}:Q", format=y_format)])
    ch: Any = bars
    if label:
        ch = bars + base.mark_text(align="left", dx=4, fontSize=10).encode(text=alt.Text(f"{label}:N"))
    return spec(_config(ch, width, height))


def stacked_share(df: pd.DataFrame, category: str, part: str, share: str, *, order: list[str],
                  colors: list[str], title: str = "", width: int = 560, height: int = 200) -> dict[str, Any]:
    """One 100% bar per category split into ordered parts (e.g. sentiment per ticket category)."""
    df = df.assign(_o=[order.index(x) if x in order else len(order) for x in df[part]])
    ch = alt.Chart(df, title=title).mark_bar().encode(
        y=alt.Y(f"{category}:N", title="", sort=None, axis=alt.Axis(labelLimit=220)),
        x=alt.X(f"{share}:Q", title="", stack="normalize", axis=alt.Axis(format=".0%")),
        color=alt.Color(f"{part}:N", title="", scale=alt.Scale(domain=order, range=colors),
                        legend=alt.Legend(orient="bottom")),
        order=alt.Order("_o:Q"),
        tooltip=[alt.Tooltip(f"{category}:N"), alt.Tooltip(f"{part}:N"), alt.Tooltip(f"{share}:Q", format=".1%")])
    return spec(_config(ch, width, height))


def path_flow(nodes: pd.DataFrame, links: pd.DataFrame, *, title: str = "", step_title: str = "",
              width: int = 560, height: int = 300) -> dict[str, Any]:
    """Step-by-step flow (a print-friendly Sankey): per step, stacked blocks for the events sessions are at,
    joined by links whose width is the number of sessions moving from one block to the next.

    nodes: step, event, count; links: step (from), source_event, target_event, count.
    """
    gap = 0.02
    rows = []
    for s, g in nodes.groupby("step", sort=True):
        tot = float(g["count"].sum()) or 1.0
        y = 0.0
        for r in g.sort_values(["count", "event"], ascending=[False, True]).itertuples():
            h = float(r.count) / tot * (1 - gap * (len(g) - 1))
            rows.append({"step": int(s), "event": str(r.event), "count": int(r.count), "y0": y, "y1": y + h,
                         "x0": int(s) - 0.18, "x1": int(s) + 0.18, "mid": y + h / 2,
                         "label": str(r.event) if h > 0.06 else ""})
            y += h + gap
    nd = pd.DataFrame(rows)
    mid = {(r.step, r.event): r.mid for r in nd.itertuples()}
    lk = links[[(int(r.step), str(r.source_event)) in mid and (int(r.step) + 1, str(r.target_event)) in mid
                for r in links.itertuples()]].copy()
    lk = lk.sort_values("count", ascending=False).head(24)
    mx = float(lk["count"].max()) if len(lk) else 1.0
    ld = pd.DataFrame([{"x": int(r.step) + 0.18, "x2": int(r.step) + 0.82, "y": mid[(int(r.step), str(r.source_event))],
                        "y2": mid[(int(r.step) + 1, str(r.target_event))], "count": int(r.count),
                        "w": 1 + 14 * float(r.count) / mx, "from": str(r.source_event), "to": str(r.target_event)}
                       for r in lk.itertuples()])
    steps = sorted(nd["step"].unique().tolist()) if len(nd) else [1]
    xs = alt.Scale(domain=[steps[0] - 0.3, steps[-1] + 0.3], nice=False)
    ys = alt.Scale(domain=[1, 0], nice=False)
    axis_x = alt.Axis(values=steps, format="d", grid=False, title=step_title)
    rects = alt.Chart(nd).mark_rect(opacity=0.9).encode(
        x=alt.X("x0:Q", scale=xs, axis=axis_x), x2="x1:Q", y=alt.Y("y0:Q", scale=ys, axis=None), y2="y1:Q",
        color=alt.Color("event:N", title="", legend=alt.Legend(orient="bottom")),
        tooltip=[alt.Tooltip("step:O"), alt.Tooltip("event:N"), alt.Tooltip("count:Q", format=",.0f")])
    labels = alt.Chart(nd).mark_text(fontSize=9, color="white").encode(
        x=alt.X("step:Q", scale=xs, axis=axis_x), y=alt.Y("mid:Q", scale=ys, axis=None), text="label:N")
    layers: list[Any] = [rects, labels]
    if len(ld):
        layers.insert(0, alt.Chart(ld).mark_rule(opacity=0.35, color="#8a9bb0").encode(
            x=alt.X("x:Q", scale=xs, axis=axis_x), x2="x2:Q", y=alt.Y("y:Q", scale=ys, axis=None), y2="y2:Q",
            strokeWidth=alt.StrokeWidth("w:Q", legend=None, scale=None),
            tooltip=[alt.Tooltip("from:N"), alt.Tooltip("to:N"), alt.Tooltip("count:Q", format=",.0f")]))
    ch = alt.layer(*layers, title=title)
    return spec(_config(ch, width, height))


# ----- rendering -----
def to_svg(vl_spec: dict[str, Any], lang: str = "en") -> str:
    """Static SVG (for PDF and e-mail), rendered without a browser; CJK via system fonts and zh-CN locale."""
    import vl_convert as vlc  # noqa: PLC0415

    _fonts()
    if lang == "zh":
        try:
            return vlc.vegalite_to_svg(vl_spec, format_locale="zh-CN", time_format_locale="zh-CN")
        except (TypeError, ValueError):
            pass
    return vlc.vegalite_to_svg(vl_spec)


def to_png(vl_spec: dict[str, Any], scale: float = 2.0) -> bytes:
    import vl_convert as vlc  # noqa: PLC0415

    _fonts()
    return vlc.vegalite_to_png(vl_spec, scale=scale)


@functools.cache
def _fonts() -> None:
    import os  # noqa: PLC0415

    import vl_convert as vlc  # noqa: PLC0415

    for d in ("/usr/share/fonts/opentype/noto", "/usr/share/fonts/truetype/noto"):
        if os.path.isdir(d):
            vlc.register_font_directory(d)


@functools.cache
def js_bundle() -> str:
    """Vega + Vega-Lite + vega-embed as one inline script (pages work offline, no CDN)."""
    import vl_convert as vlc  # noqa: PLC0415

    return vlc.javascript_bundle()


def embed_html(div_id: str, vl_spec: dict[str, Any]) -> str:
    """A <div> plus the script that renders the spec into it (needs js_bundle() once on the page)."""
    payload = json.dumps(vl_spec, ensure_ascii=False).replace("</", "<\\/")
    return (f'<div class="chart" id="{div_id}"></div>'
            f'<script>vegaEmbed("#{div_id}", {payload}, {{"actions": false, "renderer": "svg"}});</script>')
