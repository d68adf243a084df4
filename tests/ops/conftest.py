"""Fixtures for operations tests: a demo workspace built once, copied per test (real DuckDB files)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
CHILD = HERE / "_child.py"
PASS = "correct horse battery staple"


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory):
    """(workspace folder, data folder, manifest) for 300 demo customers, every source ingested."""
    import custlens
    from custlens.demo import generate
    from custlens.ingest.loader import ingest

    base = tmp_path_factory.mktemp("ops_template")
    gen = generate(base / "data", customers=300, seed=5)
    ws = custlens.init(base / "ws")
    for e in gen.manifest:
        ingest(ws, [base / "data" / e["file"]], e["table"])
    ws.close()
    return base / "ws", base / "data", gen.manifest


@pytest.fixture
def demo_ws(demo_template, tmp_path):
    """A private copy of the demo workspace folder."""
    src, _, _ = demo_template
    dst = tmp_path / "ws"
    shutil.copytree(src, dst)
    return dst


def run_cli(*args: str, ws: Path | None = None, env: dict[str, str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the real `custlens` command in a subprocess (no TTY, English messages)."""
    e = {**os.environ, "CUSTLENS_LANG": "en", "CUSTLENS_HOME": str(Path(ws or ".") / ".home"), "COLUMNS": "400",
         **(env or {})}
    cmd = [sys.executable, "-m", "custlens"]
    if ws is not None:
        cmd += ["--workspace", str(ws)]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, env=e, timeout=timeout)


def run_child(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run tests/ops/_child.py (real work, optionally SIGKILLed at a named function) in a subprocess."""
    e = {**os.environ, "CUSTLENS_LANG": "en", **(env or {})}
    return subprocess.run([sys.executable, str(CHILD), *args], capture_output=True, text=True, env=e,
                          timeout=timeout)


def no_traceback(p: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout, p.stderr[-3000:]
