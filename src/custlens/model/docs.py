"""Render docs/data-model.md from the schema so the reference never drifts from the code.

Run `python -m custlens.model.docs > docs/data-model.md`; a test checks the file is current.
"""

from __future__ import annotations

from custlens.model.aliases import ALIASES
from custlens.model.schema import META_COLUMNS, SYSTEM_TABLES, TABLES


def render() -> str:
    out = [
        "# Data model",
        "",
        "Generated from `src/custlens/model/schema.py` and `aliases.py` by `python -m custlens.model.docs`;",
        "do not edit by hand.",
        "",
        "Every source is mapped onto these canonical tables, keyed by `user_id` for customers. Logical types:",
        "string, int, float, money (amount, stored as DOUBLE), bool, date, timestamp (naive, in the workspace",
        "time zone), json (a JSON string).",
        "",
        "**Personal data** (columns marked PII) is never stored in clear: `<col>` holds the masked display form",
        "(138****1234, 张*, 4403**********1234, a***@example.com, province/city for addresses), `<col>_pseudo` a",
        "keyed HMAC-SHA256 pseudonym (equal across sources, so records join), and `<col>_enc` the AES-GCM",
        "encrypted original, readable only through the privacy API under an approved request.",
        "",
        "**Extra attributes**: source columns that match no canonical column are kept as extra VARCHAR columns",
        "named after the source header; nothing is dropped.",
        "",
        "**Bookkeeping columns** on every canonical table:",
        "",
        "| column | type | meaning |",
        "|---|---|---|",
    ]
    meta_doc = {
        "_source": "source file name the row came from",
        "_row": "1-based data row number in that file",
        "_load_id": "ingest ledger load id",
        "_imputed": "comma-separated columns whose value cleaning imputed",
        "_flags": "comma-separated quality flags, e.g. outlier_iqr:amount",
    }
    for c, t in META_COLUMNS.items():
        out.append(f"| `{c}` | {t} | {meta_doc.get(c, '')} |")
    out.append("")
    for s in TABLES.values():
        out += [f"## {s.name}", "", s.doc, "", f"Key: `{', '.join(s.key)}`"
                + (f" · time column: `{s.time_column}`" if s.time_column else "")
                + (f" · latest by: `{s.update_column}`" if s.update_column else ""), "",
                "| column | type | required | PII | meaning | source header aliases (examples) |",
                "|---|---|---|---|---|---|"]
        for c in s.columns:
            al = [a for a in ALIASES.get(c.name, []) if a != c.name][:6]
            extra = f" (one of: {', '.join(c.enum)})" if c.enum else ""
            out.append(f"| `{c.name}` | {c.type} | {'yes' if c.required else ''} | {c.pii or ''} | "
                       f"{c.doc}{extra} | {', '.join(al)} |")
        out.append("")
    out += ["## Derived and system tables", "",
            "Created by their modules: " + ", ".join(f"`{t}`" for t in SYSTEM_TABLES) + ".", ""]
    return "\n".join(out)


if __name__ == "__main__":
    print(render(), end="")
