"""Scanning for personal data: a DataFrame sample (before loading) or the whole warehouse (after).

scan_warehouse is the audit that no clear-text PII reached storage: DuckDB pre-filters every string
column with regular expressions, then Python confirms candidates with the strict validators.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from custlens.privacy.recognizers import (
    PiiDetection,
    detect_column,
    is_bank_card,
    is_cn_id_number,
    is_cn_mobile,
    is_email,
)
from custlens.privacy.transforms import mask

if TYPE_CHECKING:
    import pandas as pd

    from custlens.workspace import Workspace


def _sample(df: pd.DataFrame, n: int) -> pd.DataFrame:
    """At most n rows spread over the frame (head only would miss a column that changes later)."""
    if len(df) <= n:
        return df
    step = len(df) / n
    return df.iloc[[int(i * step) for i in range(n)]]


def _cell(v: Any) -> str | None:
    if v is None or (isinstance(v, float) and v != v):
        return None
    try:
        import pandas as pd  # noqa: PLC0415

        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        pass
    return str(v)


def scan_frame(df: pd.DataFrame, sample_rows: int = 500, min_share: float = 0.6) -> list[PiiDetection]:
    """PII detections for the columns of a DataFrame, from headers and a sample of values."""
    sample = _sample(df, sample_rows)
    found: list[PiiDetection] = []
    for col in df.columns:
        values = [_cell(v) for v in sample[col].tolist()]
        det = detect_column(str(col), values, min_share=min_share)
        if det is not None:
            found.append(det)
    return found


# ----------------------------------------------------------------------------------------------
# Warehouse scan
# ----------------------------------------------------------------------------------------------

# Loose RE2 pre-filter run inside DuckDB: anything that might hold a mobile, ID, card or email.
_PREFILTER = r"[0-9]{3}[ -]?[0-9]{4}[ -]?[0-9]{4}|[A-Za-z0-9._%+-]@[A-Za-z0-9-]+\."
# Values that are our own pseudonyms (hex) or encryption tokens are skipped as a whole.
_HEX = r"[0-9a-fA-F]{32,}"
_TOKEN = r"v1:[0-9a-f]{8}:[A-Za-z0-9+/=]+"

_B = r"(?<![0-9A-Za-z])"
_E = r"(?![0-9A-Za-z])"
# numbers: never the fraction or integer part of a decimal (0.7442845991046751 is not a card)
_BN = r"(?<![0-9A-Za-z.])"
_EN = r"(?![0-9A-Za-z]|\.[0-9])"
_CANDIDATES: list[tuple[str, re.Pattern[str], Callable[[str], bool]]] = [
    ("id_number", re.compile(_BN + r"(?:[0-9]{17}[0-9Xx]|[0-9]{15})" + _EN), is_cn_id_number),
    ("bank_card", re.compile(_BN + r"(?:[0-9]{16,19}|[0-9]{4}(?:[ -][0-9]{4}){3}(?:[ -]?[0-9]{1,3})?)" + _EN),
     is_bank_card),
    ("phone", re.compile(r"(?<![0-9A-Za-z+.])(?:(?:\+|00)?86[ -]?)?1[3-9][0-9](?:[ -]?[0-9]{4}){2}" + _EN),
     is_cn_mobile),
    ("email", re.compile(r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}"
                         r"(?![A-Za-z0-9\-])"), is_email),
]
SCAN_KINDS = tuple(k for k, _, _ in _CANDIDATES)
_SCAN_TYPES = ("VARCHAR", "JSON", "BIGINT", "UBIGINT", "HUGEINT", "UHUGEINT")


def find_pii_in_text(text: str) -> dict[str, str]:
    """Kinds of clear PII inside one text value → the first matching piece (validated, not masked)."""
    found: dict[str, str] = {}
    taken: list[tuple[int, int]] = []
    for kind, rx, ok in _CANDIDATES:
        for m in rx.finditer(text):
            if any(a < m.end() and m.start() < b for a, b in taken):  # already an ID/card
                continue
            if ok(m.group(0)):
                taken.append(m.span())
                found.setdefault(kind, m.group(0))
    return found


def _qi(name: str) -> str:
    return '"' + str(name).replace('"', '""') + '"'


def _string_columns(con: Any) -> list[tuple[str, str, str, str]]:
    rows = con.execute(
        "SELECT schema_name, table_name, column_name, data_type FROM duckdb_columns() "
        "WHERE database_name = current_database() AND NOT internal "
        "AND table_name IN (SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()) "
        "ORDER BY schema_name, table_name, column_index"
    ).fetchall()
    return [(s, t, c, d) for s, t, c, d in rows
            if d in _SCAN_TYPES or d.startswith("DECIMAL") or d.startswith("VARCHAR")]


def scan_warehouse(ws: Workspace) -> list[dict[str, Any]]:
    """Every table and string column of the workspace's DuckDB file checked for clear-text PII.

    Returns findings {table, column, kind, count, example_masked}; count is the number of rows holding
    that kind. Pseudonym (hex) and encrypted-token values are skipped, so *_pseudo/*_enc stay clean.
    """
    con = ws.duck
    # DuckDB draws a progress bar on stdout for long queries; it would corrupt `--format json` output.
    bar = con.execute("SELECT current_setting('enable_progress_bar')").fetchone()[0]
    con.execute("SET enable_progress_bar = false")
    try:
        return _scan(con)
    finally:
        con.execute(f"SET enable_progress_bar = {'true' if bar else 'false'}")


def _scan(con: Any) -> list[dict[str, Any]]:
    findings: list[dict[str, Any]] = []
    for schema, table, column, dtype in _string_columns(con):
        expr = _qi(column) if dtype in ("VARCHAR", "JSON") else f"CAST({_qi(column)} AS VARCHAR)"
        fq = f"{_qi(schema)}.{_qi(table)}"
        rows = con.execute(
            f"SELECT s, count(*) FROM (SELECT {expr} AS s FROM {fq}) "
            "WHERE s IS NOT NULL AND regexp_matches(s, ?) "
            "AND NOT regexp_full_match(s, ?) AND NOT regexp_full_match(s, ?) GROUP BY s",
            [_PREFILTER, _HEX, _TOKEN],
        ).fetchall()
        counts: dict[str, int] = {}
        examples: dict[str, str] = {}
        for text, n in rows:
            for kind, piece in find_pii_in_text(text).items():
                counts[kind] = counts.get(kind, 0) + int(n)
                examples.setdefault(kind, piece)
        name = table if schema == "main" else f"{schema}.{table}"
        for kind in SCAN_KINDS:
            if kind in counts:
                findings.append({"table": name, "column": column, "kind": kind, "count": counts[kind],
                                 "example_masked": mask(examples[kind], kind)})
    return findings
