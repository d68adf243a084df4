"""custlens.clean."""
