"""custlens.server."""
