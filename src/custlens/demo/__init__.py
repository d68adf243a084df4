"""custlens.demo: synthetic multi-source exports of a Chinese retailer with planted, known truths."""

from custlens.demo.generator import GenerateResult, generate

__all__ = ["GenerateResult", "generate"]
