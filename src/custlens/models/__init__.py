"""custlens.models."""
