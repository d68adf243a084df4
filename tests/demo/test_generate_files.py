"""Demo generator: files, formats, headers, determinism and valid-format PII."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from custlens.demo import generate
from custlens.demo.generator import id_check_ok
from custlens.errors import InputError
from custlens.model.aliases import match_column
from custlens.model.schema import TABLES


@pytest.fixture(scope="module")
def zh(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("zh")
    generate(out, customers=2000, seed=11)
    return out


def _headers(path: Path, encoding: str) -> list[str]:
    if path.suffix == ".jsonl":
        return list(json.loads(path.read_text(encoding="utf-8").splitlines()[0]))
    if path.suffix == ".xlsx":
        return [str(c) for c in pd.read_excel(path, nrows=1).columns]
    if path.suffix == ".parquet":
        return pq.read_schema(path).names
    return path.read_bytes().split(b"\n", 1)[0].decode(encoding).split(",")


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())
            if p.suffix != ".xlsx"}


def test_every_header_maps_to_its_canonical_table(zh: Path, tmp_path: Path) -> None:
    en = tmp_path / "en"
    generate(en, customers=300, seed=3, lang="en", fmt="parquet")
    for folder in (zh, en):
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))["files"]
        assert {m["table"] for m in manifest} == {"customers", "events", "orders", "order_items", "products",
                                                   "tickets", "feedback", "channel_spend"}
        for m in manifest:
            names = TABLES[m["table"]].names
            for h in _headers(folder / m["file"], m["encoding"]):
                assert match_column(h, names) is not None, (folder.name, m["file"], h)


def test_same_seed_same_files(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate(a, customers=400, seed=5)
    generate(b, customers=400, seed=5)
    generate(c, customers=400, seed=6)
    assert _digest(a) == _digest(b)
    assert _digest(a)["orders.csv"] != _digest(c)["orders.csv"]
    sa = pd.read_excel(a / "channel_spend.xlsx")
    sb = pd.read_excel(b / "channel_spend.xlsx")
    pd.testing.assert_frame_equal(sa, sb)


def test_pii_formats_are_valid(zh: Path) -> None:
    crm = pd.read_csv(zh / "crm_customers.csv", dtype=str)
    ids = crm["身份证号"]
    assert ids.map(id_check_ok).all()
    born = pd.to_datetime(crm["出生日期"]).dt.strftime("%Y%m%d")
    assert (ids.str[6:14] == born).all()
    male = ids.str[16].astype(int) % 2 == 1
    known = crm["性别"].notna()
    assert ((crm.loc[known, "性别"] == "男") == male[known]).all()
    digits = crm["手机号"].str.replace(r"\D", "", regex=True).str[-11:]
    assert digits.str.fullmatch(r"1[3-9]\d{9}").all()
    mails = crm["邮箱"].dropna()
    assert mails.str.fullmatch(r"[a-z.]+\d+@[a-z0-9.]+\.com").all()
    assert crm["地址"].str.match(r"^.+?(省|市|自治区).*?(路|街|大道)\d+号$").all()
    assert not id_check_ok(ids.iloc[0][:17] + ("0" if ids.iloc[0][17] != "0" else "1"))


def test_gbk_survey_is_really_gbk(zh: Path) -> None:
    raw = (zh / "survey_gbk.csv").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    df = pd.read_csv(zh / "survey_gbk.csv", encoding="gbk")
    assert list(df.columns)[0] == "问卷ID"
    assert df["评分"].between(0, 10).all()


def test_xlsx_format_caps_big_tables(tmp_path: Path) -> None:
    r = generate(tmp_path / "x", customers=200, seed=2, fmt="xlsx", dirty=False)
    files = {m["table"]: m["file"] for m in r.manifest if m["file"] != "app_users.xlsx"}
    assert files["orders"] == "orders.xlsx" and files["events"] == "events.csv"
    orders = pd.read_excel(tmp_path / "x" / "orders.xlsx", dtype=str)
    assert len(orders) == r.truth["clean_rows"]["orders"]
    assert "dirt" in r.truth and r.truth["dirt"]["enabled"] is False
    assert not orders.duplicated().any()


def test_bad_arguments_raise_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        generate(tmp_path, customers=500, fmt="json")
    with pytest.raises(InputError):
        generate(tmp_path, customers=10)
    with pytest.raises(InputError, match="order rate"):
        generate(tmp_path, customers=500, order_rate=0)
    with pytest.raises(InputError, match="tracked share"):
        generate(tmp_path, customers=500, tracked_share=1.5)


def test_shape_knobs_scale_orders_and_events_per_order(zh: Path, tmp_path: Path) -> None:
    """order_rate and tracked_share give the benchmark sizes (issue 8's M: 10 orders and 50 events per
    customer) from the same mechanisms; the CRM side keeps its size."""
    base = json.loads((zh / "manifest.json").read_text(encoding="utf-8"))
    res = generate(tmp_path / "shaped", customers=2000, seed=11, order_rate=2.5, tracked_share=0.48)
    rows = {m["file"]: m["rows"] for m in base["files"]}
    assert res.rows["crm_customers.csv"] == rows["crm_customers.csv"]
    orders = res.rows["orders.csv"] / rows["orders.csv"]
    assert 2.0 < orders < 2.6  # more purchases per customer; churn still ends some of them
    per_order = (res.rows["events.csv"] / res.rows["orders.csv"]) / (rows["events.csv"] / rows["orders.csv"])
    assert 0.4 < per_order < 0.6  # about half the tracked orders' sessions are in the log
    man = json.loads((tmp_path / "shaped" / "manifest.json").read_text(encoding="utf-8"))
    assert (man["order_rate"], man["tracked_share"]) == (2.5, 0.48)
    assert base["order_rate"] == 1.0 and base["tracked_share"] == 1.0


def test_en_locale_names_and_values(tmp_path: Path) -> None:
    generate(tmp_path / "en", customers=300, seed=4, lang="en")
    crm = pd.read_csv(tmp_path / "en" / "crm_customers.csv", dtype=str)
    assert crm["name"].str.fullmatch(r"[A-Z][a-z]+ [A-Z][a-z]+").all()
    assert set(crm["gender"].dropna()) == {"male", "female"}
    orders = pd.read_csv(tmp_path / "en" / "orders.csv", dtype=str)
    assert set(orders["order_status"]) == {"paid", "refunded", "cancelled"}
    assert not re.search(r"[\u4e00-\u9fff]", (tmp_path / "en" / "tickets.csv").read_text(encoding="utf-8"))
