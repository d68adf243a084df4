"""The CLI as a user runs it: a real subprocess, real workspace, JSON on stdout only."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def run(*args: str, cwd=None, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, "-m", "custlens", *args], capture_output=True, text=True, cwd=cwd)
    if check and p.returncode != 0:
        raise AssertionError(f"custlens {' '.join(args)} failed ({p.returncode}):\n{p.stderr}")
    return p


def test_every_command_module_registers():
    from custlens import cli

    assert cli.BROKEN == {}


def test_init_and_clear_error_without_traceback(tmp_path):
    run("init", str(tmp_path / "w"))
    assert (tmp_path / "w" / "custlens.toml").exists()
    p = run("--workspace", str(tmp_path / "nope"), "profile", "build", check=False)
    assert p.returncode != 0
    assert "Traceback" not in p.stderr and "custlens init" in p.stderr


def test_json_output_is_one_document(tmp_path):
    run("init", str(tmp_path / "w"))
    p = run("--workspace", str(tmp_path / "w"), "tags", "list", "--format", "json")
    doc = json.loads(p.stdout)
    assert {r["group"] for r in doc["rules"]} == {"basic", "behaviour", "value"}


def test_table_output_survives_missing_numbers(capsys):
    from custlens.cli import emit

    emit({"avg_satisfaction": float("nan"), "orders": 3, "tags": {"x": float("nan")}}, "table")
    out = capsys.readouterr().out
    assert "avg_satisfaction" in out and "—" in out
    emit({"v": float("nan")}, "json")
    assert '"v": null' in capsys.readouterr().out


def test_engine_out_of_memory_is_a_clear_error(monkeypatch, capsys):
    """DuckDB's out-of-memory error (a real one: a distinct over 3M strings in 8 MB with spilling off)
    reaches the user as a custlens error naming the setting to change, with exit code 2, not a traceback."""
    import duckdb

    from custlens import cli

    def run_out_of_memory() -> None:
        con = duckdb.connect()
        con.execute("SET memory_limit='8MB'")
        con.execute("SET temp_directory=''")
        con.execute("SET threads=1")
        con.execute("SELECT count(*) FROM (SELECT DISTINCT (i * 7919)::VARCHAR FROM range(3000000) t(i))").fetchall()

    monkeypatch.setattr(cli, "app", run_out_of_memory)
    monkeypatch.setenv("CUSTLENS_LANG", "en")
    with pytest.raises(SystemExit) as ex:
        cli.main()
    assert ex.value.code == 2
    msg = " ".join(capsys.readouterr().err.split())  # Rich wraps long lines
    assert "ran out of memory" in msg and "Out of Memory Error" in msg
    assert "[engine] memory_limit" in msg and "raise memory_limit" in msg
    assert "Traceback" not in msg
