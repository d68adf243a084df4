"""custlens.ingest."""
