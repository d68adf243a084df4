"""Sharded demo generation (issue 8, size L): parts written one after another into part-NN folders, with every
id, mobile number and e-mail unique across parts, one product catalog, and a top-level manifest that ingests as
one data set with exact row accounting."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

import custlens
from custlens.demo import generate
from custlens.errors import InputError
from custlens.ingest.loader import ingest
from custlens.model.aliases import match_column
from custlens.model.schema import TABLES

PARTS = 3
N = 910  # not a multiple of 3: parts of 304, 303 and 303 customers


@pytest.fixture(scope="module")
def sharded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sharded")
    generate(out, customers=N, seed=5, fmt="parquet", shards=PARTS)
    return out


def _frame(path: Path, encoding: str) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pandas()
    if path.suffix == ".jsonl":
        return pd.read_json(path, lines=True, dtype=False)
    if path.suffix == ".xlsx":
        return pd.read_excel(path, dtype=str)
    return pd.read_csv(path, dtype=str, encoding=encoding)


def _column(df: pd.DataFrame, table: str, canon: str, required: bool = True) -> pd.Series | None:
    names = TABLES[table].names
    for h in df.columns:
        if match_column(str(h), names) == canon:
            return df[h]
    assert not required, f"no {canon} column in {list(df.columns)}"
    return None


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text(encoding="utf-8"))


def test_parts_have_their_own_files_and_truths(sharded: Path) -> None:
    man = _manifest(sharded)
    assert man["shards"] == PARTS
    assert sorted({e["part"] for e in man["files"]}) == [1, 2, 3]
    for e in man["files"]:
        assert (sharded / e["file"]).is_file(), e["file"]
        assert e["file"].startswith(f"part-{e['part']:02d}/")
    truth = json.loads((sharded / "truth.json").read_text(encoding="utf-8"))
    sizes = [json.loads((sharded / p).read_text(encoding="utf-8"))["customers"] for p in truth["parts"]]
    assert sizes == [304, 303, 303]
    crm = [e for e in man["files"] if e["file"].endswith("crm_customers.parquet")]
    assert len(crm) == PARTS


@pytest.mark.parametrize("table,canon", [("customers", "user_id"), ("customers", "phone"), ("customers", "email"),
                                         ("orders", "order_id"), ("order_items", "order_id"),
                                         ("events", "event_id"), ("events", "session_id"), ("tickets", "ticket_id"),
                                         ("feedback", "feedback_id")])
def test_ids_and_contacts_are_unique_across_parts(sharded: Path, table: str, canon: str) -> None:
    seen: dict[int, set] = {}
    for e in _manifest(sharded)["files"]:
        if e["table"] != table:
            continue
        col = _column(_frame(sharded / e["file"], e["encoding"]), table, canon, required=False)
        if col is None:  # e.g. the app users have no e-mail
            continue
        col = col.dropna().astype(str)
        if canon in ("phone", "email"):  # the dirt writes some mobiles as +86 138 1234 5678: compare digits
            col = col.str.replace(r"\D", "", regex=True).str[-11:] if canon == "phone" else col.str.lower()
        seen.setdefault(e["part"], set()).update(col)
    assert len(seen) == PARTS
    if canon == "phone":  # part s of k draws its last 8 digits from its own s-th of the range
        for part, phones in seen.items():
            tail = pd.Series(sorted(phones)).str[-8:].astype(int)
            lo, hi = (part - 1) * 10**8 // PARTS, part * 10**8 // PARTS
            assert tail.between(lo, hi - 1).all(), part
    for a in seen:
        for b in seen:
            if a < b:
                assert not seen[a] & seen[b], (table, canon, a, b, sorted(seen[a] & seen[b])[:5])


def test_parts_share_one_catalog_and_own_their_campaigns(sharded: Path) -> None:
    man = _manifest(sharded)["files"]
    cats = [pq.read_table(sharded / e["file"]).to_pandas() for e in man if e["table"] == "products"]
    assert len(cats) == PARTS and all(c.equals(cats[0]) for c in cats[1:])
    camps = [set(_column(_frame(sharded / e["file"], e["encoding"]), "channel_spend", "campaign"))
             for e in man if e["table"] == "channel_spend"]
    assert not camps[0] & camps[1] and not camps[1] & camps[2]
    assert all(c.endswith(" #2") for c in camps[1])


def test_customer_ids_number_on_across_parts(sharded: Path) -> None:
    ids = []
    for e in _manifest(sharded)["files"]:
        if e["file"].endswith("crm_customers.parquet"):
            ids += sorted(set(_column(_frame(sharded / e["file"], "utf-8"), "customers", "user_id")))
    assert ids == [f"C{i:08d}" for i in range(1, N + 1)]


def test_the_parts_ingest_as_one_data_set(sharded: Path, tmp_path: Path) -> None:
    ws = custlens.init(tmp_path / "ws")
    read = 0
    skipped = []
    for e in _manifest(sharded)["files"]:
        for r in ingest(ws, [sharded / e["file"]], e["table"]):
            if r.status == "already_loaded":  # the ledger knows this content
                skipped.append(e["file"])
                continue
            assert r.rows_read == e["rows"], e["file"]
            assert r.rows_read == r.loaded + r.duplicates + r.quarantined
            read += r.rows_read
    # the catalog is the same file in every part: only the first part's is read
    assert skipped == ["part-02/products.parquet", "part-03/products.parquet"]
    assert read == sum(e["rows"] for e in _manifest(sharded)["files"] if e["file"] not in skipped)
    # every CRM customer of every part is a customer of the whole (none lost to an id shared across parts)
    crm = ws.sql("SELECT count(DISTINCT user_id) FROM customers WHERE user_id LIKE 'C%'").fetchone()[0]
    assert crm == N
    assert ws.row_count("products") == 500  # the same catalog three times: loaded once
    ws.close()


def test_bad_shard_counts_raise_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="shards"):
        generate(tmp_path, customers=500, shards=0)
    with pytest.raises(InputError, match="shards"):
        generate(tmp_path, customers=500, shards=6)  # parts of 83 customers are too small


def test_cli_writes_parts(tmp_path: Path) -> None:
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "custlens", "generate", "--out", str(tmp_path / "d"), "--customers",
                        "400", "--shards", "2", "--format", "parquet", "--output-format", "json"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert {f["part"] for f in out["files"]} == {1, 2}
    assert all((tmp_path / "d" / f["file"]).is_file() for f in out["files"])
