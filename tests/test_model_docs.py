from pathlib import Path

from custlens.model.aliases import match_column, normalize_header
from custlens.model.docs import render
from custlens.model.schema import TABLES

ROOT = Path(__file__).parent.parent


def test_data_model_doc_is_current():
    assert (ROOT / "docs" / "data-model.md").read_text(encoding="utf-8") == render(), (
        "docs/data-model.md is stale: run `python -m custlens.model.docs > docs/data-model.md`")


def test_aliases_map_chinese_and_english_headers():
    orders = TABLES["orders"].names
    assert match_column("下单时间", orders) == "order_time"
    assert match_column("实付金额（元）", orders) == "amount"
    assert match_column("Order Date", orders) == "order_time"
    cust = TABLES["customers"].names
    assert match_column("客户ID", cust) == "user_id"
    assert match_column("会员ID", cust) == "user_id"
    assert match_column("User ID", cust) == "user_id"
    assert match_column("手机号", cust) == "phone"
    assert match_column("mobile", cust) == "phone"
    assert match_column("地区", cust) == "region"
    assert match_column("行为类型", TABLES["events"].names) == "event"
    assert match_column("满意度评分", TABLES["tickets"].names) == "satisfaction"
    assert match_column("积分", cust) is None


def test_normalize_header_folds_width_case_and_units():
    assert normalize_header("ＵＳＥＲ＿ＩＤ") == normalize_header("user id") == "userid"
    assert normalize_header("金额(元)") == "金额"
