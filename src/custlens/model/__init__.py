"""The canonical data model: table schemas and header aliases."""

from custlens.model.aliases import ALIASES, match_column
from custlens.model.schema import TABLES, Column, TableSchema, get_table

__all__ = ["ALIASES", "TABLES", "Column", "TableSchema", "get_table", "match_column"]
