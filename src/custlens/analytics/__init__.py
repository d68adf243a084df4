"""custlens.analytics."""
