"""custlens.profile."""
