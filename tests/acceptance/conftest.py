"""Shared by the acceptance tests: the planted truths and the session's generated workspace."""

from __future__ import annotations

import json

import pytest

import custlens


@pytest.fixture(scope="module")
def truth(demo_ws):
    return json.loads((demo_ws.data_dir / "truth.json").read_text(encoding="utf-8"))


@pytest.fixture
def w(demo_ws):
    ws = custlens.open(demo_ws.workspace)
    yield ws
    ws.close()
