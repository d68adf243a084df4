"""Exports: their own permission, a row cap per role, and two-person approval for bulk customer data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from custlens.errors import ApprovalRequired, PermissionDenied
from custlens.i18n import register, t
from custlens.security import approvals, audit
from custlens.security.context import actor
from custlens.security.policy import CUSTOMER_TABLES, export_allowed
from custlens.workspace import Workspace, check_identifier

register({
    "export.cap": {"zh": "导出 {n} 行超过角色上限 {cap} 行", "en": "exporting {n} rows exceeds your role's cap of {cap}"},
    "export.bulk": {"zh": "批量导出 {n} 行客户明细需要双人审批", "en": "a bulk export of {n} customer-level rows needs a "
                    "two-person approval"},
})


def export_table(ws: Workspace, table: str, *, columns: list[str] | None = None, request_id: str | None = None,
                 out: Path | None = None) -> pd.DataFrame:
    """Rows of a table as the acting user may see them, within their export cap, audited."""
    u = actor(ws)
    check_identifier(table, "table name")
    try:
        cap = export_allowed(ws, u.roles)
    except PermissionDenied:
        audit.record(ws, "export", target=table, tables=[table], result="refused:no_permission")
        raise
    tb = ws.table(table)
    cols = list(columns) if columns else list(tb.columns)
    for c in cols:
        if c not in tb.columns:
            raise PermissionDenied(f"column {c!r} of {table} is not visible to you or does not exist",
                                   fix=f"choose from: {', '.join(tb.columns)}")
    n = int(tb.count().execute())
    if cap is not None and n > cap:
        audit.record(ws, "export", target=table, tables=[table], result="refused:cap", detail={"rows": n, "cap": cap})
        raise PermissionDenied(t("export.cap", None, n=n, cap=cap), fix="filter the data or ask an admin")
    payload: dict[str, Any] = {"table": table, "columns": sorted(cols), "rows": n}
    if table in CUSTOMER_TABLES and n > ws.config.security.bulk_export_rows:
        if not request_id:
            audit.record(ws, "export", target=table, tables=[table], result="refused:needs_approval",
                         detail={"rows": n})
            raise ApprovalRequired(t("export.bulk", None, n=n),
                                   fix=f"custlens approval request export --payload '{_json(payload)}' and have "
                                       "another admin approve it; then pass --request")
        approvals.consume(ws, request_id, "export", payload)
    df = tb.select(*cols).to_pandas()
    n_cust = int(df["user_id"].nunique()) if "user_id" in df.columns else None
    audit.record(ws, "export", target=table, tables=[table], columns=cols, n_customers=n_cust,
                 detail={"rows": len(df), "request": request_id, "file": out.name if out else None})
    if out is not None:
        out = Path(out)
        if out.suffix == ".parquet":
            df.to_parquet(out, index=False)
        elif out.suffix == ".xlsx":
            df.to_excel(out, index=False)
        else:
            df.to_csv(out, index=False, encoding="utf-8-sig")
    return df


def _json(d: dict[str, Any]) -> str:
    import json  # noqa: PLC0415

    return json.dumps(d, ensure_ascii=False, sort_keys=True)
