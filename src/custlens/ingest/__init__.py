"""custlens.ingest: read sources, map them onto the canonical model and load them with full accounting."""

from custlens.ingest.loader import LoadReport, ingest
from custlens.ingest.mapping import ColumnMapping, guess_table, map_columns
from custlens.ingest.readers import open_sources, read_sample

__all__ = ["ColumnMapping", "LoadReport", "guess_table", "ingest", "map_columns", "open_sources", "read_sample"]
