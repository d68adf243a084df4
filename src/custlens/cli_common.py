"""Small CLI types shared by command modules without importing the whole CLI (avoids import cycles)."""

from enum import StrEnum


class Format(StrEnum):
    """Output format of a reporting command: a Rich table, one JSON document, or CSV."""

    table = "table"
    json = "json"
    csv = "csv"
