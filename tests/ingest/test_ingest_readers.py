"""Readers: every format and encoding, delimiter detection, streaming batches, read_sample."""

from __future__ import annotations

from pathlib import Path

import pytest

from custlens.errors import InputError
from custlens.ingest.readers import detect_delimiter, detect_encoding, open_sources, read_sample

D = Path(__file__).parent.parent / "data" / "ingest"


def _rows(path: Path, **kw) -> tuple[list[str], list[dict]]:
    (src,) = open_sources(path, **kw)
    rows = [r for b in src.batches() for r in b.to_pylist()]
    return src.headers, rows


@pytest.mark.parametrize("name", ["customers_gbk.csv", "customers_bom.csv"])
def test_chinese_csv_encodings(name):
    (src,) = open_sources(D / name)
    assert src.encoding == ("gb18030" if "gbk" in name else "utf-8-sig")
    headers, rows = _rows(D / name)
    assert headers[0] == "客户编号" and headers[1] == "姓名"  # no BOM left on the first header
    assert rows[0]["地区"] == "广东省深圳市南山区" and len(rows) == 3


@pytest.mark.parametrize(("name", "delim"), [("orders_semicolon.csv", ";"), ("events_tab.tsv", "\t"),
                                              ("events_pipe.csv", "|")])
def test_delimiters(name, delim):
    (src,) = open_sources(D / name)
    assert src.delimiter == delim
    _, rows = _rows(D / name)
    assert all(None not in r for r in rows[:1])


def test_delimiter_detection_prefers_consistent_split():
    assert detect_delimiter(["a;b;c", "1;2,5;3", "4;5;6"]) == ";"
    assert detect_delimiter(["a,b", "1,2"]) == ","
    assert detect_delimiter(["a\tb\tc", "1\t2\t3"]) == "\t"


def test_gbk_detected_from_prefix():
    text = "姓名,城市\n" + "张伟,深圳市\n李娜,杭州市\n" * 20
    assert detect_encoding(text.encode("gbk")) == "gb18030"
    assert detect_encoding(text.encode("utf-8")) == "utf-8"


def test_gbk_file_whose_prefix_ends_inside_a_character(tmp_path):
    """The reader detects the encoding on the file's first PREFIX_BYTES; a GBK file larger than that whose
    prefix ends in the middle of a two-byte character was 'cannot detect the text encoding' (found on the
    size-L survey exports)."""
    from custlens.ingest.readers import PREFIX_BYTES

    rows = [f"Q{i:07d},C{i:08d},2024-10-03 00:02:44,{i % 11},售后太难了，不会再来" for i in range(12_000)]
    for pad in range(64):  # shift the content until the prefix boundary splits a character
        data = ("问卷ID,用户ID,反馈时间,评分,反馈内容" + " " * pad + "\n" + "\n".join(rows) + "\n").encode("gbk")
        assert len(data) > PREFIX_BYTES
        try:
            data[:PREFIX_BYTES].decode("gb18030")
        except UnicodeDecodeError:
            break
    else:
        pytest.fail("no padding put the boundary inside a character")
    path = tmp_path / "survey_gbk.csv"
    path.write_bytes(data)
    (src,) = open_sources(path)
    assert src.encoding == "gb18030"
    got = [r for b in src.batches() for r in b.to_pylist()]
    assert len(got) == 12_000 and got[-1]["反馈内容"] == "售后太难了，不会再来"


def test_xlsx_each_sheet_or_named_one():
    srcs = open_sources(D / "crm.xlsx")
    assert [s.name for s in srcs] == ["crm.xlsx#会员", "crm.xlsx#orders"]
    (orders,) = open_sources(D / "crm.xlsx", sheet="orders")
    rows = [r for b in orders.batches() for r in b.to_pylist()]
    assert rows[0]["实付金额"] == "100" and rows[1]["实付金额"] == "200.5"  # numbers as text, no trailing .0
    with pytest.raises(InputError, match="nope"):
        open_sources(D / "crm.xlsx", sheet="nope")


def test_json_lines_array_parquet_sqlite():
    h, rows = _rows(D / "events.jsonl")
    assert h == ["event_id", "user_id", "event", "event_time", "properties"]
    assert rows[0]["properties"] == '{"page": "/p/0"}'
    h, rows = _rows(D / "products.json")
    assert rows[1]["price"] == "¥299"
    h, rows = _rows(D / "orders.parquet")
    assert rows[0]["order_time"] == "2024-05-12 01:15:00" and rows[0]["amount"] == "99.5"
    h, rows = _rows(D / "shop.sqlite", db_table="products")
    assert [r["product_id"] for r in rows] == ["P1", "P2", "P3"] and rows[2]["price"] is None


def test_streaming_batches_and_empty_values(tmp_path):
    p = tmp_path / "big.csv"
    p.write_text("a,b\n" + "".join(f"{i},\n" for i in range(2500)), encoding="utf-8")
    (src,) = open_sources(p, batch_rows=1000)
    sizes = [b.num_rows for b in src.batches()]
    assert sizes == [1000, 1000, 500]
    first = next(iter(src.batches()))
    assert first.column("b").null_count == 1000  # empty → None
    assert first.schema.field("a").type == "string"


def test_duplicate_and_blank_headers_are_kept(tmp_path):
    p = tmp_path / "dup.csv"
    p.write_text("name,name,\n1,2,3\n", encoding="utf-8")
    (src,) = open_sources(p)
    assert src.headers == ["name", "name (2)", "column_3"]


def test_read_sample_strings(tmp_path):
    p = tmp_path / "s.csv"
    p.write_text("phone,amount\n13812345678,1.5\n,2\n" + "13900000000,3\n" * 600, encoding="utf-8")
    df = read_sample(p, n=500)
    assert len(df) == 500 and list(df.columns) == ["phone", "amount"]
    assert df.iloc[0]["phone"] == "13812345678" and df.iloc[1]["phone"] is None
    assert read_sample(D / "crm.xlsx", n=2, sheet="orders").iloc[1]["订单号"] == "X2"


def test_unreadable_files_name_the_file(tmp_path):
    with pytest.raises(InputError, match="missing.csv"):
        open_sources(tmp_path / "missing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"a,b\n1,2\n" + b"\xff\xfe\xfa\xfb" * 4 + b",x\n")
    with pytest.raises(InputError, match="bad.csv"):
        open_sources(bad, encoding="utf-8")
    late = tmp_path / "late.csv"  # valid UTF-8 prefix, broken bytes after the detection window
    late.write_bytes(b"a,b\n" + b"1,2\n" * 100_000 + b"\xff\xfe,x\n")
    (src,) = open_sources(late)
    with pytest.raises(InputError, match="late.csv"):
        list(src.batches())
    broken = tmp_path / "broken.xlsx"
    broken.write_bytes(b"PK\x03\x04 not really a workbook")
    with pytest.raises(InputError, match="broken.xlsx"):
        open_sources(broken)


@pytest.mark.parametrize("unit", ["s", "ms", "us"])
def test_parquet_timestamps_become_the_same_text_as_cell_by_cell(unit):
    """Typed Parquet timestamps and dates are turned into text vectorized; the text is what to_text writes
    for each value (datetime.isoformat with a space), before 1970, at fractions of a second, at the ends of
    datetime's range and for nulls."""
    import numpy as np
    import pyarrow as pa

    from custlens.ingest.readers import _as_strings, to_text

    per = {"s": 1, "ms": 1_000, "us": 1_000_000}[unit]
    lo, hi = -62135596800 * per, 253402300799 * per + per - 1  # 0001-01-01 … 9999-12-31 23:59:59.999999
    rng = np.random.default_rng(7)
    v = np.concatenate([rng.integers(lo, hi, 3000), rng.integers(-10 * per, 10 * per, 500), [lo, hi, 0, -1, 1]])
    mask = rng.random(len(v)) < 0.05
    col = pa.array(v, pa.timestamp(unit), mask=mask)
    assert _as_strings(col).to_pylist() == [to_text(x) for x in col.to_pylist()]
    days = pa.array(rng.integers(-719162, 2932896, 2000).astype(np.int32), pa.date32())
    assert _as_strings(days).to_pylist() == [to_text(x) for x in days.to_pylist()]
