"""Fuzzing: malformed bytes and values into every reader and parser. Never a crash without a clear
CustlensError, never a silent drop (read = loaded + duplicates + quarantined, read = rows written)."""

from __future__ import annotations

import csv
import io
import json
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import custlens
from custlens.errors import CustlensError
from custlens.ingest import values as V
from custlens.ingest.readers import open_sources

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                        HealthCheck.too_slow])

text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
junk = st.one_of(text, st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
                 st.sampled_from(["", " ", "NaN", "inf", "-0", "1e309", "2024-02-30", "2024-13-01 25:61:61",
                                  "¥1,234.5", "1,2,3", "--5", "0x1F", "null", "None", "是", "否", "\x00", "١٢٣",
                                  "9" * 40, "2024-01-01T00:00:00+25:00", "北京市朝阳区", "Tuesday"]))


def _read_all(path: Path) -> int:
    """Rows yielded by every source of a file, as the loader reads them.

    open_sources() must raise only CustlensError; an exception from batches() is turned into an
    InputError naming the file by load_source (the loader's contract), so it is converted the same way here.
    """
    n = 0
    for src in open_sources(path):
        src.content_hash()
        try:
            for b in src.batches():
                n += b.num_rows
        except CustlensError:
            raise
        except Exception as e:  # noqa: BLE001 - what load_source does
            raise CustlensError(f"loading {src.name} failed: {e}", where=src.path) from e
    return n


def _check(path: Path) -> None:
    try:
        _read_all(path)
    except CustlensError as e:
        assert e.what and e.where  # a clear message naming the file
        assert path.name in e.message or str(path) in e.message


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".xlsx", ".parquet"])
@FUZZ
@given(data=st.binary(max_size=600))
def test_ops_fuzz_reader_bytes(tmp_path_factory, suffix, data):
    path = tmp_path_factory.mktemp("fz") / f"in{suffix}"
    path.write_bytes(data)
    _check(path)


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
@FUZZ
@given(data=st.text(max_size=300).map(lambda s: s.encode("utf-8")))
def test_ops_fuzz_json_reader_text(tmp_path_factory, suffix, data):
    """Any valid UTF-8 text (invalid UTF-8 is the known finding below)."""
    path = tmp_path_factory.mktemp("fz") / f"in{suffix}"
    path.write_bytes(data)
    _check(path)


def test_ops_jsonl_invalid_utf8_is_a_clear_error(tmp_path):
    from tests.ops.conftest import no_traceback, run_cli

    ws = custlens.init(tmp_path / "ws")
    ws.close()
    bad = tmp_path / "events.jsonl"
    bad.write_bytes(b'{"event_id": "a", "event": "view"}\n\xc2')
    p = run_cli("ingest", str(bad), "--table", "events", ws=tmp_path / "ws")
    assert p.returncode == 2
    no_traceback(p)


@FUZZ
@given(data=st.binary(min_size=1, max_size=400))
def test_ops_fuzz_reader_damaged_real_files(tmp_path_factory, data):
    """Valid parquet/xlsx files with bytes overwritten in the middle."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    d = tmp_path_factory.mktemp("fz")
    tbl = pa.table({"order_id": [f"o{i}" for i in range(50)], "amount": [str(i) for i in range(50)]})
    buf = io.BytesIO()
    pq.write_table(tbl, buf)
    raw = bytearray(buf.getvalue())
    at = len(raw) // 3
    raw[at: at + len(data)] = data
    p = d / "damaged.parquet"
    p.write_bytes(bytes(raw))
    _check(p)


PARSERS = [V.parse_timestamp, V.parse_date, V.parse_amount, V.parse_number, V.parse_int, V.parse_bool,
           V.parse_member_level, V.parse_region, V.parse_province, V.parse_city, V.parse_gender, V.parse_platform]


@FUZZ
@given(value=st.one_of(junk, st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.none()))
def test_ops_fuzz_value_parsers(value):
    """Parsers answer a value, None (empty) or ParseFailure (→ quarantined with a reason); nothing else."""
    for fn in PARSERS:
        try:
            fn(value)
        except V.ParseFailure as e:
            assert e.kind and str(e)


@FUZZ
@given(values=st.lists(junk, min_size=1, max_size=30))
def test_ops_fuzz_vectorized_parsers_keep_length(values):
    """The SQL/Arrow parsers give one output per input: nothing dropped, nothing invented."""
    import pyarrow as pa

    arr = pa.array(values, pa.string())
    for fn in (V.vec_timestamp, V.vec_date):
        assert len(fn(arr)) == len(values)
    for sql_fn in (V.sql_amount, V.sql_number, V.sql_int):
        assert len(V.vec_sql(arr, sql_fn)) == len(values)


@pytest.fixture(scope="module")
def fuzz_ws(tmp_path_factory):
    ws = custlens.init(tmp_path_factory.mktemp("fuzzws") / "ws")
    yield ws
    ws.close()


row = st.tuples(st.one_of(st.none(), text), st.one_of(st.none(), text), junk, junk, junk)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(rows=st.lists(row, min_size=1, max_size=25))
def test_ops_fuzz_ingest_accounts_for_every_row(fuzz_ws, tmp_path_factory, fmt, rows):
    from custlens.ingest.loader import ingest

    path = tmp_path_factory.mktemp("fz") / f"orders-{uuid.uuid4().hex[:6]}.{fmt}"
    header = ["order_id", "user_id", "order_time", "amount", "status"]
    rows = [r for r in rows if any(v not in (None, "") and str(v).strip() for v in r)]  # blank lines are not rows
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(header)
        w.writerows([["" if v is None else v for v in r] for r in rows])
        path.write_text(buf.getvalue() + f"# {uuid.uuid4().hex}\n" * 0, encoding="utf-8")
    else:
        path.write_text("".join(json.dumps(dict(zip(header, r, strict=True)), ensure_ascii=False) + "\n"
                                for r in rows), encoding="utf-8")
    before = fuzz_ws.row_count("orders")
    try:
        reps = ingest(fuzz_ws, [path], "orders")
    except CustlensError as e:
        assert e.what
        assert fuzz_ws.row_count("orders") == before  # a refused file loads nothing
        return
    for r in reps:
        if r.status == "already_loaded":
            continue
        assert r.rows_read == r.loaded + r.duplicates + r.quarantined
        assert r.rows_read == len(rows), (r.rows_read, len(rows))
        assert fuzz_ws.row_count("orders") == before + r.loaded
