"""Shared fixtures: real workspaces in temporary folders (real DuckDB files)."""

from __future__ import annotations

from pathlib import Path

import pytest

import custlens

DATA = Path(__file__).parent / "data"


@pytest.fixture
def ws(tmp_path: Path):
    """A fresh workspace with the canonical tables, closed after the test."""
    w = custlens.init(tmp_path / "ws")
    yield w
    w.close()


@pytest.fixture
def data_dir() -> Path:
    return DATA
