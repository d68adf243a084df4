"""custlens.security."""
