"""Base for analysis and model results: tables + parameters + summary + chart, usable from Jupyter."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Result:
    """A frozen analysis result. Subclasses add fields; `table` is the main output (pandas DataFrame)."""

    table: Any  # pandas.DataFrame (small by nature: aggregated or one row per customer)
    params: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)

    name: str = "result"

    def to_pandas(self) -> Any:
        return self.table

    def to_arrow(self) -> Any:
        import pyarrow as pa  # noqa: PLC0415

        return pa.Table.from_pandas(self.table, preserve_index=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (used by --format json and the REST API)."""
        return {
            "name": self.name,
            "params": _jsonable(self.params),
            "summary": _jsonable(self.summary),
            "rows": _records(self.table),
        }

    def chart(self, lang: str | None = None) -> dict[str, Any]:
        """A Vega-Lite spec (dict). Subclasses override; the default is a plain table-like bar chart."""
        return {}

    def _repr_html_(self) -> str:
        head = "".join(f"<li><b>{k}</b>: {v}</li>" for k, v in self.summary.items())
        tbl = self.table.head(20).to_html(index=False) if hasattr(self.table, "to_html") else ""
        return f"<div><h4>{self.name}</h4><ul>{head}</ul>{tbl}</div>"



def _records(df: Any) -> list[dict[str, Any]]:
    if df is None:
        return []
    if hasattr(df, "to_json"):
        return json.loads(df.to_json(orient="records", date_format="iso", force_ascii=False))
    return list(df)


def _jsonable(o: Any) -> Any:
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if hasattr(o, "isoformat"):
        return o.isoformat()
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, float) and o != o:
        return None
    return o
