"""Header mapping: aliases, mapping files, extras, clashes, missing required columns, table guesses."""

from __future__ import annotations

import json

import pytest

from custlens.errors import MappingError
from custlens.ingest.mapping import extra_name, guess_table, load_mapping_file, map_columns, require_table


def test_chinese_headers_map_to_canonical_columns():
    cm = map_columns(["客户编号", "姓名", "性别", "手机号", "地区", "会员等级", "注册时间", "爱好"], "customers")
    assert cm.mapped == {"客户编号": "user_id", "姓名": "name", "性别": "gender", "手机号": "phone", "地区": "region",
                         "会员等级": "member_level", "注册时间": "register_time"}
    assert cm.extra == {"爱好": "爱好"}
    assert cm.pii == {"name": "name", "phone": "phone"}


def test_mapping_file_toml_and_json(tmp_path):
    toml = tmp_path / "m.toml"
    toml.write_text('"编号" = "order_id"\n"会员" = "user_id"\n"时间" = "order_time"\n"钱" = "amount"\n'
                    '"内部备注" = "ignore"\n"渠道码" = "extra:channel_code"\n', encoding="utf-8")
    js = tmp_path / "m.json"
    js.write_text(json.dumps(load_mapping_file(toml), ensure_ascii=False), encoding="utf-8")
    for f in (toml, js):
        cm = map_columns(["编号", "会员", "时间", "钱", "内部备注", "渠道码"], "orders", mapping=load_mapping_file(f))
        assert cm.mapped == {"编号": "order_id", "会员": "user_id", "时间": "order_time", "钱": "amount"}
        assert cm.ignored == ["内部备注"]  # ignored, but reported
        assert cm.extra == {"渠道码": "channel_code"}
        assert "内部备注" in cm.to_dict()["ignored"]


def test_two_headers_for_one_column_is_an_error():
    with pytest.raises(MappingError) as e:
        map_columns(["用户ID", "客户编号", "event", "time"], "events", source="log.csv")
    assert "用户ID" in e.value.what and "客户编号" in e.value.what and "user_id" in e.value.what
    assert "--mapping" in e.value.fix


def test_missing_required_column_names_file_and_column():
    with pytest.raises(MappingError) as e:
        map_columns(["订单号", "用户ID", "金额"], "orders", source="sales.csv")
    assert "order_time" in e.value.what and "sales.csv" in e.value.what
    assert "--mapping" in e.value.fix


def test_event_id_may_be_derived():
    cm = map_columns(["user_id", "event", "event_time"], "events")
    assert cm.derived == ["event_id"]


def test_bad_mapping_target_and_extra_names(tmp_path):
    with pytest.raises(MappingError, match="nonsense"):
        map_columns(["a", "order_id"], "orders", mapping={"a": "nonsense"})
    assert extra_name("Favorite Color") == "favorite_color"
    assert extra_name('bad"; DROP') == "bad_drop"
    cm = map_columns(["user_id", "event", "time", "phone_pseudo"], "events")
    assert cm.extra["phone_pseudo"] == "phone_pseudo"
    cm = map_columns(["user_id", "Phone Pseudo"], "customers")  # would clash with the stored pseudonym column
    assert cm.extra["Phone Pseudo"] == "phone_pseudo_extra"


def test_guess_table():
    assert guess_table(["订单号", "用户ID", "下单时间", "实付金额"], "export.csv") == "orders"
    assert guess_table(["a", "b"], "2024_orders.csv") == "orders"
    assert guess_table(["a", "b"], "x.csv") is None
    with pytest.raises(MappingError) as e:
        require_table(["a", "b"], "x.csv", None)
    assert "--table" in e.value.fix
