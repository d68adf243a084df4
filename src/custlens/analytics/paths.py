"""User paths: sessionize each person's events by an inactivity gap, then count transitions, whole
paths (up to max_steps) and a step × event matrix, with Sankey-ready nodes and links.

Sessions are cut per person by the gap, not taken from `session_id`: source session ids differ
between web, app and mini-program trackers, while a gap rule means the same thing everywhere.
Consecutive repeats of the same event inside a session are collapsed (view, view → view).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import ibis
import pandas as pd

from custlens.analytics import _paths_fast
from custlens.analytics._time import (
    date_bounds,
    events_table,
    filter_range,
    materialized,
    parse_duration,
    person_expr,
    seconds,
)
from custlens.analytics.base import person_key
from custlens.errors import ValidationError
from custlens.i18n import register, t
from custlens.results import Result, _records

if TYPE_CHECKING:
    import ibis.expr.types as ir
    import typer

    from custlens.workspace import Workspace

register({
    "paths.title": {"zh": "用户路径", "en": "User paths"},
    "paths.step": {"zh": "第几步", "en": "Step"},
    "paths.sessions": {"zh": "会话数", "en": "Sessions"},
    "paths.event": {"zh": "事件", "en": "Event"},
    "paths.bad_steps": {"zh": "步数必须在 2 到 20 之间", "en": "steps must be between 2 and 20"},
    "paths.bad_steps.fix": {"zh": "如 --steps 5", "en": "e.g. --steps 5"},
})

SEP = " → "


@dataclass(frozen=True)
class PathsResult(Result):
    """`table` = top paths; plus transitions, the step matrix, and Sankey nodes/links."""

    transitions: Any = None
    step_matrix: Any = None
    nodes: Any = None
    links: Any = None
    name: str = "paths"

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d.update(paths=_records(self.table), transitions=_records(self.transitions),
                 step_matrix=_records(self.step_matrix), sankey={"nodes": _records(self.nodes),
                                                                 "links": _records(self.links)})
        return d

    def chart(self, lang: str | None = None) -> dict[str, Any]:
        """Step-flow bars: for each step, the events sessions are at (stacked counts)."""
        import altair as alt  # noqa: PLC0415

        df = self.step_matrix if self.step_matrix is not None else pd.DataFrame(columns=["step", "event", "count"])
        chart = alt.Chart(df).mark_bar().encode(
            x=alt.X("step:O", title=t("paths.step", lang)),
            y=alt.Y("count:Q", title=t("paths.sessions", lang)),
            color=alt.Color("event:N", title=t("paths.event", lang)),
            tooltip=["step", "event", "count"],
        ).properties(title=t("paths.title", lang), width=480)
        return chart.to_dict()


def paths(ws: Workspace, *, session_gap: str | float = "30m", start_event: str | None = None,
          end_event: str | None = None, max_steps: int = 5, top: int = 20, date_from: Any = None,
          date_to: Any = None, as_of: Any = None, fast: bool = True) -> PathsResult:
    """Most common in-session paths (from start_event, or leading to end_event), transitions and steps.

    On DuckDB the sessions are walked in numpy after one sort (`_paths_fast`); `fast=False`, and other
    engines, compute them with the window functions that define them (`_path_counts`)."""
    if not 2 <= int(max_steps) <= 20:
        raise ValidationError(t("paths.bad_steps"), where="max_steps", fix=t("paths.bad_steps.fix"))
    n = int(max_steps)
    gap = parse_duration(session_gap, default_unit="m")
    start, end = date_bounds(date_from, date_to, as_of)

    ev = filter_range(events_table(ws), "event_time", start, end)
    ev = ev.select(person=person_expr(ev), event=ev.event, event_time=ev.event_time,
                   eid=ev.event_id.cast("string").coalesce(ibis.literal("")), ts=seconds(ev.event_time))
    ev = ev.filter(ev.person.notnull() & ev.event.notnull())
    # Persons are only partitions here (no output names them): their 64-bit hash sorts much faster than
    # the id strings in the per-person windows below (see analytics.base.person_key).
    ev = ev.mutate(person=person_key(ev, ev.person))
    if fast and _paths_fast.available(ws):
        pc_df = _paths_fast.path_counts(ws, ev, gap, n, start_event, end_event)
        pc = ibis.memtable(pc_df, schema={**{f"s{k}": "string" for k in range(1, n + 1)}, "count": "int64"})
    else:
        pc = _path_counts(ev, gap, n, start_event, end_event)
    with materialized(ws, pc) as pc:
        links, matrix, top_paths, total = _from_path_counts(pc, n, top)
    trans = (links.groupby(["event", "nxt"], as_index=False, sort=False)["count"].sum()
             .sort_values(["count", "event", "nxt"], ascending=[False, True, True], kind="stable")
             .head(top).reset_index(drop=True))
    trans = trans.rename(columns={"event": "from", "nxt": "to"})
    top_paths["share"] = top_paths["count"] / total if total else 0.0

    links = links.rename(columns={"event": "source_event", "nxt": "target_event"})
    links["source"] = [f"{s}_{e}" for s, e in zip(links["step"], links["source_event"], strict=True)]
    links["target"] = [f"{s + 1}_{e}" for s, e in zip(links["step"], links["target_event"], strict=True)]
    nodes = matrix.assign(id=[f"{s}_{e}" for s, e in zip(matrix["step"], matrix["event"], strict=True)])
    nodes = nodes[["id", "step", "event", "count"]]

    params = {"session_gap": session_gap, "session_gap_seconds": gap, "start_event": start_event,
              "end_event": end_event, "max_steps": n, "top": top, "date_from": start, "date_to": end}
    summary = {"sessions": total, "distinct_paths_shown": len(top_paths)}
    return PathsResult(table=top_paths, params=params, summary=summary, transitions=trans,
                       step_matrix=matrix, nodes=nodes,
                       links=links[["source", "target", "step", "source_event", "target_event", "count"]])


def _path_counts(ev: ir.Table, gap: float, n: int, start_event: str | None, end_event: str | None) -> ir.Table:
    """The definition (any backend): distinct paths (s1..sn) with their session counts, from windows over
    each person's events."""
    # one sort per person: the gap to the previous event opens a session; a repeat of the previous
    # event inside a session is collapsed (the previous row is in the same session unless this opens one)
    wp = ibis.window(group_by=ev.person, order_by=[ev.event_time, ev.eid])
    ev = ev.mutate(_new=(ev.ts - ev.ts.lag().over(wp) > gap).fill_null(True), _prev=ev.event.lag().over(wp))
    ev = ev.filter(ev._new | (ev.event != ev._prev))
    wc = ibis.window(group_by=ev.person, order_by=[ev.event_time, ev.eid], preceding=None, following=0)
    ev = ev.select("person", "event", "event_time", "eid", session=ev._new.cast("int64").sum().over(wc))
    ev = ev.mutate(pos=ibis.row_number().over(ibis.window(group_by=[ev.person, ev.session],
                                                          order_by=[ev.event_time, ev.eid])) + 1)
    wsess = ibis.window(group_by=[ev.person, ev.session])
    if start_event is not None:
        ev = ev.mutate(_sp=ev.pos.min(where=ev.event == start_event).over(wsess))
        ev = ev.filter(ev._sp.notnull() & (ev.pos >= ev._sp))
        ev = ev.mutate(step=ev.pos - ev._sp + 1)
        if end_event is not None:
            ev = ev.mutate(_ep=ev.pos.min(where=ev.event == end_event).over(wsess))
            ev = ev.filter(ev._ep.notnull() & (ev.pos <= ev._ep))
        ev = ev.filter(ev.step <= n)
    elif end_event is not None:
        ev = ev.mutate(_ep=ev.pos.min(where=ev.event == end_event).over(wsess))
        ev = ev.filter(ev._ep.notnull() & (ev.pos <= ev._ep) & (ev.pos > ev._ep - n))
        first = ev.pos.min().over(wsess)
        ev = ev.mutate(step=ev.pos - first + 1)
    else:
        ev = ev.filter(ev.pos <= n).mutate(step=ev.pos)
    ev = ev.select("person", "session", "event", "step")

    # one row per session (its events at steps 1..n; steps are contiguous from 1), then one row per
    # distinct path with its session count: everything below is computed from that small table
    piv = ev.group_by(["person", "session"]).aggregate(
        **{f"s{k}": ev.event.max(where=ev.step == k) for k in range(1, n + 1)})
    pc = piv.group_by([f"s{k}" for k in range(1, n + 1)]).aggregate(count=piv.count())
    return pc


def _from_path_counts(pc: ir.Table, n: int, top: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, int]:
    """Links (step, event, nxt, count), the step matrix, the top paths and the session total from the
    distinct-path counts."""
    step_rows = [pc.filter(pc[f"s{k}"].notnull()).select(step=ibis.literal(k, "int64"), event=pc[f"s{k}"],
                                                          count=pc["count"]) for k in range(1, n + 1)]
    st = ibis.union(*step_rows)
    matrix = (st.group_by(["step", "event"]).aggregate(count=st["count"].sum().cast("int64"))
              .order_by(["step", ibis.desc("count"), "event"]).execute())
    link_rows = [pc.filter(pc[f"s{k + 1}"].notnull()).select(step=ibis.literal(k, "int64"), event=pc[f"s{k}"],
                                                              nxt=pc[f"s{k + 1}"], count=pc["count"])
                 for k in range(1, n)]
    lk = ibis.union(*link_rows)
    links = (lk.group_by(["step", "event", "nxt"]).aggregate(count=lk["count"].sum().cast("int64"))
             .order_by([ibis.desc("count"), "step", "event", "nxt"]).execute())
    # steps are contiguous from 1, so joining the non-null steps is the path. (A CASE per step that
    # repeated the path so far doubled the expression with every step: 2^20 nodes at max_steps=20.)
    path = ibis.literal(SEP).join([pc[f"s{k}"] for k in range(1, n + 1)])
    lengths = ibis.literal(1, "int64")
    for k in range(2, n + 1):
        lengths = lengths + pc[f"s{k}"].notnull().cast("int64")
    pp = pc.select(path=path, length=lengths, count=pc["count"])
    top_paths = (pp.group_by(["path", "length"]).aggregate(count=pp["count"].sum().cast("int64"))
                 .order_by([ibis.desc("count"), "path"]).limit(top).execute())
    total = pc["count"].sum().execute()
    return links, matrix, top_paths, 0 if total is None or pd.isna(total) else int(total)


def register_cli(app: typer.Typer) -> None:
    import typer  # noqa: PLC0415

    from custlens.cli import Format, emit, open_ws  # noqa: PLC0415

    @app.command("paths")
    def paths_cmd(
        start: str = typer.Option(None, "--start", help="Paths beginning at this event."),
        end: str = typer.Option(None, "--end", help="Paths leading to this event."),
        steps: int = typer.Option(5, "--steps", help="Maximum steps per path."),
        top: int = typer.Option(20, "--top", help="How many paths and transitions to show."),
        gap: str = typer.Option("30m", "--session-gap", help="Inactivity that ends a session."),
        date_from: str = typer.Option(None, "--from", help="First day (YYYY-MM-DD)."),
        date_to: str = typer.Option(None, "--to", help="Last day (YYYY-MM-DD), inclusive."),
        fmt: str = typer.Option("table", "--format", help="table | json | csv"),
    ) -> None:
        """Most common in-session paths and transitions."""
        ws = open_ws(read_only=True)
        try:
            res = paths(ws, session_gap=gap, start_event=start, end_event=end, max_steps=steps, top=top,
                        date_from=date_from, date_to=date_to)
        finally:
            ws.close()
        f = Format(fmt)
        if f is Format.json:
            emit(res.to_dict(), f)
            return
        emit(None, f, title=t("paths.title"), frame=res.table)
