"""Churn from an explicit label column: parsing, leakage guards, stratified 5-fold CV, and the CLI JSON."""

from __future__ import annotations

import json
from datetime import datetime

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from custlens.models.churn import churn


def _labelled(ws, n: int = 1200, seed: int = 2) -> None:
    rng = np.random.default_rng(seed)
    plan = rng.choice(["basic", "plus", "pro"], n, p=[0.4, 0.4, 0.2])
    fee = rng.normal(100, 20, n)
    p = np.where(plan == "basic", 0.55, 0.12)
    y = rng.random(n) < p
    yes = np.array(["yes", "Y", "1", "是", "churned", "TRUE"])
    no = np.array(["no", "N", "0", "否", "active", "false"])
    label = np.where(y, yes[rng.integers(0, 6, n)], no[rng.integers(0, 6, n)]).astype(object)
    label[:15] = "unknown?"
    ws.ensure_table("customers", {"churned": "string", "plan": "string", "monthly_fee": "float64",
                                  "churn_reason": "string", "status_cn": "string", "cancel_flag": "float64",
                                  "crm_code": "string"})
    df = pd.DataFrame({
        "user_id": [f"L{i:05d}" for i in range(n)], "register_time": datetime(2023, 1, 1), "churned": label,
        "plan": plan, "monthly_fee": fee, "gender": rng.choice(["male", "female"], n),
        "churn_reason": np.where(y, "price", None),  # filled only for churners: leaks by name
        "status_cn": np.where(y, "流失", "留存"),  # a recoding of the label: leaks by value
        "cancel_flag": y.astype(float),  # a numeric copy
        "crm_code": [f"X{i:07d}" for i in range(n)],  # id-like
    })
    ws.duck.register("_df", df)
    ws.duck.execute('INSERT INTO customers BY NAME SELECT * FROM _df')
    ws.duck.unregister("_df")


def test_explicit_label_cv_without_leakage(ws):
    _labelled(ws)
    res = churn(ws, label="churned")
    s = res.summary
    assert s["evaluation"] == "stratified_5fold"
    assert s["label"]["unparseable"] == 15 and s["label"]["labelled"] == 1185
    ex = s["excluded_columns"]
    assert ex["churn_reason"] == "derived_from_label_name"
    assert ex["status_cn"] == "derived_from_label_values" and ex["cancel_flag"] == "derived_from_label_values"
    assert ex["crm_code"] == "id_like"
    assert not {"churn_reason", "status_cn", "cancel_flag", "crm_code", "user_id"} & set(s["features"])
    # an honest model: good but far from the perfect score a leak would give
    assert 0.65 < s["roc_auc"] < 0.9
    assert res.drivers[0]["feature"] == "plan"
    assert res.drivers[0]["description_en"].startswith("customers whose plan is basic")
    assert len(res.table) == 1200  # every customer is scored, including unlabelled ones


def test_unknown_label_column_is_a_clear_error(ws):
    _labelled(ws, n=100)
    from custlens.errors import ValidationError

    with pytest.raises(ValidationError, match="no column"):
        churn(ws, label="nope")


def test_cli_json_document(ws, monkeypatch):
    _labelled(ws, n=600)
    from custlens.cli import app

    r = CliRunner().invoke(app, ["--workspace", str(ws.root), "model", "churn", "--label", "churned",
                                 "--format", "json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    for k in ("roc_auc", "pr_auc", "n_customers", "positive_rate", "drivers", "baseline", "evaluation"):
        assert k in doc
    assert doc["evaluation"] == "stratified_5fold"
    assert {"feature", "importance", "description_zh", "description_en"} <= set(doc["drivers"][0])
    assert "roc_auc" in doc["baseline"]
