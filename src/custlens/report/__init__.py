"""custlens.report."""
