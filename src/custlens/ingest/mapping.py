"""Map source headers onto a canonical table: aliases, an optional mapping file, extras, guesses.

Nothing is dropped silently: every header is mapped, kept as an extra attribute column, or listed
as ignored because the mapping file said so.
"""

from __future__ import annotations

import json
import re
import tomllib
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from custlens.errors import MappingError, ValidationError
from custlens.i18n import register, t
from custlens.model.aliases import match_column
from custlens.model.schema import META_COLUMNS, TABLES, TableSchema, get_table
from custlens.workspace import check_identifier

IGNORE = "ignore"
EXTRA_PREFIX = "extra:"
DERIVED_COLUMNS = {"events": ("event_id",)}  # required columns derived when the source lacks them

register({
    "ingest.map.file": {"zh": "映射文件无法读取：{detail}", "en": "the mapping file cannot be read: {detail}"},
    "ingest.map.file.fix": {"zh": "映射文件应为 TOML 或 JSON：{\"源列名\": \"标准列名\" | \"extra:名称\" | \"ignore\"}",
                            "en": "a mapping file is TOML or JSON: {\"source header\": \"canonical column\" | "
                                  "\"extra:<name>\" | \"ignore\"}"},
    "ingest.map.target": {"zh": "映射文件把 {header} 映射到 {target}，但表 {table} 没有这一列",
                          "en": "the mapping file maps {header} to {target}, which table {table} does not have"},
    "ingest.map.target.fix": {"zh": "可用的列：{cols}；或写 \"extra:名称\" / \"ignore\"",
                              "en": "use one of: {cols}; or \"extra:<name>\" / \"ignore\""},
    "ingest.map.dup": {"zh": "两个源列 {a} 和 {b} 都映射到标准列 {col}",
                       "en": "two source columns, {a} and {b}, both map to canonical column {col}"},
    "ingest.map.dup.fix": {"zh": "在 --mapping 文件中把其中一个改为 \"extra:名称\" 或 \"ignore\"，例如 {{\"{b}\": \"ignore\"}}",
                           "en": "in a --mapping file map one of them to \"extra:<name>\" or \"ignore\", e.g. "
                                 "{{\"{b}\": \"ignore\"}}"},
    "ingest.map.required": {"zh": "{source} 缺少表 {table} 的必需列 {col}",
                            "en": "{source} lacks column {col}, which table {table} requires"},
    "ingest.map.required.fix": {"zh": "如果某个源列就是 {col}，在 --mapping 文件中写 {{\"源列名\": \"{col}\"}}（现有列：{headers}）",
                                "en": "if one of the source columns is {col}, add {{\"<source header>\": \"{col}\"}} "
                                      "to a --mapping file (columns found: {headers})"},
    "ingest.map.noextras": {"zh": "表 {table} 不接受额外列，但源列 {header} 无法映射",
                            "en": "table {table} takes no extra columns, and source column {header} maps to none"},
    "ingest.map.noextras.fix": {"zh": "在 --mapping 文件中映射它或写 \"ignore\"",
                                "en": "map it or mark it \"ignore\" in a --mapping file"},
    "ingest.map.guess": {"zh": "无法判断 {source} 应载入哪张表", "en": "cannot tell which table {source} belongs to"},
    "ingest.map.guess.fix": {"zh": "用 --table 指定（{tables}）", "en": "pass --table ({tables})"},
    "ingest.map.extra_name": {"zh": "额外列名 {name} 与已有列冲突", "en": "extra column name {name} clashes with another column"},
    "ingest.map.extra_name.fix": {"zh": "在 --mapping 文件中写 {{\"{header}\": \"extra:其他名称\"}}",
                                  "en": "add {{\"{header}\": \"extra:<other name>\"}} to a --mapping file"},
})


@dataclass
class ColumnMapping:
    """How one source's headers land in a table; stored as JSON in the ledger."""

    table: str
    mapped: dict[str, str] = field(default_factory=dict)  # source header → canonical column
    extra: dict[str, str] = field(default_factory=dict)  # source header → extra column name
    ignored: list[str] = field(default_factory=list)  # headers the mapping file said to ignore
    derived: list[str] = field(default_factory=list)  # canonical columns generated (event_id)
    pii: dict[str, str] = field(default_factory=dict)  # stored column → PII kind

    def to_dict(self) -> dict[str, Any]:
        return {"table": self.table, "mapped": dict(self.mapped), "extra": sorted(self.extra.values()),
                "extra_columns": dict(self.extra), "ignored": list(self.ignored), "derived": list(self.derived),
                "pii": dict(self.pii)}

    def source_of(self, canonical: str) -> str | None:
        for h, c in self.mapped.items():
            if c == canonical:
                return h
        return None


def load_mapping_file(path: str | Path | None) -> dict[str, str]:
    """Read a TOML or JSON mapping file ({header: canonical | "extra:<name>" | "ignore"}; [columns] allowed)."""
    if path is None:
        return {}
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
        data = json.loads(text) if p.suffix.lower() == ".json" or text.lstrip().startswith("{") \
            else tomllib.loads(text)
    except (OSError, json.JSONDecodeError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise MappingError(t("ingest.map.file", None, detail=e), where=str(p), fix=t("ingest.map.file.fix")) from None
    if isinstance(data, dict) and isinstance(data.get("columns"), dict):
        data = data["columns"]
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise MappingError(t("ingest.map.file", None, detail="not a {header: target} table"), where=str(p),
                           fix=t("ingest.map.file.fix"))
    return {k.strip(): v.strip() for k, v in data.items()}


def extra_name(header: str) -> str:
    """Column name for an extra attribute: NFKC, lower case, separators → '_', quotes and ';' dropped."""
    h = unicodedata.normalize("NFKC", header).strip().lower()
    h = re.sub(r"[\s\-\./:]+", "_", h)
    h = re.sub(r"[\"`;\x00-\x1f'()\[\]{}]+", "", h).strip("_")
    return h or "extra"


def map_columns(headers: list[str], table: str, *, mapping: dict[str, str] | None = None,
                source: str = "") -> ColumnMapping:
    """Map headers onto `table`; raises MappingError for clashes, unknown targets or missing required columns."""
    schema = get_table(table)
    mapping = mapping or {}
    cm = ColumnMapping(table=table)
    by_canonical: dict[str, str] = {}
    storage = set(schema.storage_columns()) | set(META_COLUMNS)
    allowed = [*schema.names, "region"] if schema.has("province") else schema.names
    for h in headers:
        target = mapping.get(h)
        if target is None:
            target = next((v for k, v in mapping.items() if k.casefold() == h.casefold()), None)
        if target is not None and target.casefold() == IGNORE:
            cm.ignored.append(h)
            continue
        if target is not None and target.startswith(EXTRA_PREFIX):
            _add_extra(cm, schema, h, target[len(EXTRA_PREFIX):].strip(), storage, source)
            continue
        if target is not None:
            if target not in allowed:
                raise MappingError(t("ingest.map.target", None, header=h, target=target, table=table),
                                   where=source, fix=t("ingest.map.target.fix", None, cols=", ".join(allowed)))
            canon: str | None = target
        else:
            canon = match_column(h, allowed)
        if canon is None:
            _add_extra(cm, schema, h, extra_name(h), storage, source)
            continue
        if canon in by_canonical:
            raise MappingError(t("ingest.map.dup", None, a=by_canonical[canon], b=h, col=canon), where=source,
                               fix=t("ingest.map.dup.fix", None, b=h))
        by_canonical[canon] = h
        cm.mapped[h] = canon
    for c in schema.columns:
        if c.required and c.name not in by_canonical:
            if c.name in DERIVED_COLUMNS.get(table, ()):
                cm.derived.append(c.name)
                continue
            raise MappingError(t("ingest.map.required", None, source=source or "source", table=table, col=c.name),
                               where=source,
                               fix=t("ingest.map.required.fix", None, col=c.name, headers=", ".join(headers)))
    for c in schema.pii_columns:
        if c.name in by_canonical:
            cm.pii[c.name] = c.pii or ""
    return cm


def _add_extra(cm: ColumnMapping, schema: TableSchema, header: str, name: str, storage: set[str],
               source: str) -> None:
    if not schema.extras:
        raise MappingError(t("ingest.map.noextras", None, table=schema.name, header=header), where=source,
                           fix=t("ingest.map.noextras.fix"))
    base = name
    if base in storage or base in cm.extra.values() or base in schema.names:
        base = f"{name}_extra"
    taken = storage | set(cm.extra.values()) | set(schema.names)
    if base in taken or any(base == f"{v}_pseudo" or base == f"{v}_enc" for v in cm.extra.values()):
        raise MappingError(t("ingest.map.extra_name", None, name=name), where=source,
                           fix=t("ingest.map.extra_name.fix", None, header=header))
    try:
        check_identifier(base, "extra column name")
    except ValidationError as e:
        raise MappingError(e.what, where=f"{source}, column {header!r}", fix=e.fix) from None
    cm.extra[header] = base


def guess_table(headers: list[str], source_name: str = "") -> str | None:
    """The canonical table a source most likely belongs to: file name first, then header coverage."""
    stem = Path(source_name.split("#")[0]).stem.lower()
    for name in sorted(TABLES, key=len, reverse=True):
        if name == "actions":
            continue
        if re.search(rf"(^|[^a-z]){name}([^a-z]|$)", stem) or re.search(rf"(^|[^a-z]){name.rstrip('s')}([^a-z]|$)",
                                                                          stem):
            return name
    scores = []
    for name, schema in TABLES.items():
        if name == "actions":
            continue
        allowed = [*schema.names, "region"] if schema.has("province") else schema.names
        hit = {match_column(h, allowed) for h in headers} - {None}
        required = {c.name for c in schema.columns if c.required} - set(DERIVED_COLUMNS.get(name, ()))
        if required <= hit:
            scores.append((len(hit) / len(schema.columns), len(hit), name))
    scores.sort(reverse=True)
    if not scores or (len(scores) > 1 and scores[0][:2] == scores[1][:2]):
        return None
    return scores[0][2]


def require_table(headers: list[str], source_name: str, table: str | None) -> str:
    """`table` validated, or the guess for this source; MappingError suggesting --table when unsure."""
    if table:
        get_table(table)
        return table
    guess = guess_table(headers, source_name)
    if guess is None:
        raise MappingError(t("ingest.map.guess", None, source=source_name), where=source_name,
                           fix=t("ingest.map.guess.fix", None, tables=", ".join(n for n in TABLES if n != "actions")))
    return guess
