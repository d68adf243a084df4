"""custlens.demo."""
