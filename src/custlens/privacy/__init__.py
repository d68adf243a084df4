"""custlens.privacy."""
