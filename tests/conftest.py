"""Shared fixtures: real workspaces in temporary folders (real DuckDB files)."""

from __future__ import annotations

from pathlib import Path

import pytest

import custlens

DATA = Path(__file__).parent / "data"


@pytest.fixture(autouse=True)
def _fresh_cli_state():
    """The CLI's global options (-w, --as, --lang) live in a module-level State for one process; CliRunner
    invocations share it, so a test's -w must not leak into a later test's CUSTLENS_WORKSPACE."""
    from custlens.cli import State, state

    yield
    fresh = State()
    for k in vars(fresh):
        setattr(state, k, getattr(fresh, k))


@pytest.fixture
def ws(tmp_path: Path):
    """A fresh workspace with the canonical tables, closed after the test."""
    w = custlens.init(tmp_path / "ws")
    yield w
    w.close()


@pytest.fixture
def data_dir() -> Path:
    return DATA


def insert_rows(ws, table: str, rows: list[dict]) -> None:
    """Insert plain dict rows into a warehouse table by column name (other columns stay NULL)."""
    import pandas as pd

    df = pd.DataFrame(rows)
    ws.duck.register("_rows", df)
    try:
        ws.duck.execute(f'INSERT INTO "{table}" BY NAME SELECT * FROM _rows')
    finally:
        ws.duck.unregister("_rows")


@pytest.fixture(scope="session")
def demo_ws(tmp_path_factory):
    """ONE generated workspace per test session (3,000 customers: ingested, cleaned, profiled, tagged).

    Tests must treat it as read-only; open it with custlens.open(demo_ws.workspace) and close it.
    """
    from custlens.demo.main import build_workspace

    return build_workspace(tmp_path_factory.mktemp("demo") / "ws", customers=3000, seed=7, lang="zh")
