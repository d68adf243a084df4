"""Declarative tags: defaults cover the three groups, custom rules work, unsafe expressions are refused."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from custlens.config import TagRule
from custlens.errors import ValidationError
from custlens.profile.build import build_profile
from custlens.profile.tags import build_tags, compile_rule, coverage, tags_of
from tests.conftest import insert_rows


@pytest.fixture
def profiled(ws):
    insert_rows(ws, "customers", [
        {"user_id": f"U{i}", "_source": "crm.csv", "gender": "male" if i % 2 else "female",
         "birth_date": date(1960 + i * 4, 1, 1), "province": "广东" if i < 5 else "浙江", "member_level": "gold",
         "register_time": datetime(2023, 1, 1)} for i in range(10)])
    insert_rows(ws, "orders", [
        {"order_id": f"o{i}-{k}", "user_id": f"U{i}", "order_time": datetime(2024, 6, 1 + k), "amount": 50.0 * (i + 1),
         "status": "paid"} for i in range(8) for k in range(i % 5)])
    build_profile(ws, as_of=date(2024, 6, 30))
    return ws


def test_default_tags_cover_three_groups(profiled):
    cov = build_tags(profiled).set_index(["tag_group", "tag_name"])
    assert cov.loc[("*", "*"), "coverage"] == 1.0
    for g in ("basic", "behaviour", "value"):
        assert cov.loc[(g, "*"), "coverage"] >= 0.8
    tg = tags_of(profiled, "U4").set_index("tag_name").tag_value
    # U4: born 1976 → 48 on 2024-06-30; 4 orders of 250 → loyal, aov 250
    assert tg["age_band"] == "45_54"
    assert tg["purchase_frequency"] == "regular"
    assert tg["aov_band"] == "100_300"
    assert tg["lifecycle"] == "loyal"
    assert tg["region"] == "广东"
    # U0 and U5 bought nothing (i % 5 == 0): prospect, and no AOV band
    tg0 = tags_of(profiled, "U5").set_index("tag_name").tag_value
    assert tg0["lifecycle"] == "prospect" and "aov_band" not in tg0


def test_custom_boolean_and_value_tags(profiled):
    profiled.config.tags = [
        TagRule(name="big_spender", group="value", expr="revenue >= 1000"),
        TagRule(name="gender", group="basic", expr="UPPER(gender)"),  # overrides the default
    ]
    build_tags(profiled)
    cov = coverage(profiled).set_index(["tag_group", "tag_name"])
    # revenue = 50*(i+1)*(i%5): U3=600, U4=1000, U6=350, U7=800 → only U4 reaches 1000
    assert cov.loc[("value", "big_spender"), "customers"] == 1
    assert set(tags_of(profiled, "U1").tag_value) >= {"MALE"}


@pytest.mark.parametrize("expr", [
    "revenue > 0; DROP TABLE customers",
    "(SELECT COUNT(*) FROM customers) > 0",
    "phone_pseudo IS NOT NULL",
    "read_csv('/etc/passwd') IS NOT NULL",
    "customers.revenue > 1",
])
def test_unsafe_tag_expressions_are_rejected(profiled, expr):
    cols = list(profiled.table("customer_profile").columns)
    with pytest.raises(ValidationError):
        compile_rule(TagRule(name="x", group="basic", expr=expr), cols)


def test_bad_tag_name_rejected(profiled):
    with pytest.raises(ValidationError):
        compile_rule(TagRule(name='a"; drop', group="basic", expr="revenue > 1"), ["revenue"])
