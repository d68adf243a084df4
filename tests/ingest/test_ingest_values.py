"""Value parsers: documented forms, failures, and scalar/vectorized agreement (hypothesis)."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from custlens.ingest import values as V


@pytest.mark.parametrize(("raw", "expected"), [
    ("2024-05-12 09:15:00", datetime(2024, 5, 12, 9, 15)),
    ("2024-05-12T09:15:00+08:00", datetime(2024, 5, 12, 9, 15)),
    ("2024-05-12T01:15:00Z", datetime(2024, 5, 12, 9, 15)),
    ("2024-05-12T09:15:00-05:00", datetime(2024, 5, 12, 22, 15)),
    ("2024/5/12", datetime(2024, 5, 12)),
    ("2024/05/12 9:15", datetime(2024, 5, 12, 9, 15)),
    ("20240512", datetime(2024, 5, 12)),
    ("2024年5月12日", datetime(2024, 5, 12)),
    ("12/05/2024", datetime(2024, 5, 12)),  # ambiguous: day first
    ("05/13/2024", datetime(2024, 5, 13)),  # second part > 12: month first
    ("45424", datetime(2024, 5, 12)),
    ("45424.375", datetime(2024, 5, 12, 9)),
    ("1715476500", datetime(2024, 5, 12, 9, 15)),
    ("1715476500000", datetime(2024, 5, 12, 9, 15)),
    ("  2024-05-12  ", datetime(2024, 5, 12)),
    ("", None), (None, None),
])
def test_timestamp_forms(raw, expected):
    assert V.parse_timestamp(raw) == expected
    assert V.vec_timestamp([raw]).to_pylist() == [expected]


@pytest.mark.parametrize("raw", ["2024-02-30", "13/13/2024", "abc", "1234", "99999", "2024-05-12 25:00", "1800-01-01"])
def test_timestamp_failures(raw):
    with pytest.raises(V.ParseFailure):
        V.parse_timestamp(raw)
    assert V.vec_timestamp([raw]).to_pylist() == [None]


def test_workspace_timezone_is_used():
    assert V.parse_timestamp("2024-05-12T00:00:00Z", "Europe/London") == datetime(2024, 5, 12, 1)
    assert V.vec_timestamp(["2024-05-12T00:00:00Z"], "Europe/London").to_pylist() == [datetime(2024, 5, 12, 1)]
    assert V.parse_date("2024-05-12T20:00:00Z") == date(2024, 5, 13)


@pytest.mark.parametrize(("raw", "expected"), [
    ("¥1,299.00", 1299.0), ("￥1299", 1299.0), ("$1,299.50", 1299.5), ("1 299,00", 1299.0), ("1.299,50", 1299.5),
    ("1.2万", 12000.0), ("3亿", 3e8), ("(1,299.00)", -1299.0), ("-12.5", -12.5), ("¥-12", -12.0), ("12元", 12.0),
    (".5", 0.5), ("", None),
])
def test_amount_forms(raw, expected):
    assert V.parse_amount(raw) == expected
    assert V.vec_amount([raw]).to_pylist() == [expected]


@pytest.mark.parametrize("raw", ["abc", "(-1)", "--1", "1,2,3", "12 元 5", "(12"])
def test_amount_failures(raw):
    with pytest.raises(V.ParseFailure):
        V.parse_amount(raw)
    assert V.vec_amount([raw]).to_pylist() == [None]


def test_int_rejects_fractions():
    assert V.parse_int("1,000") == 1000
    with pytest.raises(V.ParseFailure):
        V.parse_int("3.5")
    assert V.vec_int(["1,000", "3.5", "7"]).to_pylist() == [1000, None, 7]


@pytest.mark.parametrize(("raw", "expected"), [
    ("是", True), ("否", False), ("真", True), ("假", False), ("Y", True), ("n", False), ("Yes", True),
    ("FALSE", False), ("1", True), ("0", False), ("对", True), ("错", False), (None, None),
])
def test_bool_forms(raw, expected):
    assert V.parse_bool(raw) is expected
    vals, bad = V.vec_bool([raw])
    assert vals.to_pylist() == [expected] and bad.to_pylist() == [False]


def test_standardizers():
    assert [V.parse_gender(x) for x in ["男", "女", "M", "female", "先生", "女士", "保密"]] == \
        ["male", "female", "male", "female", "male", "female", "unknown"]
    with pytest.raises(V.ParseFailure):
        V.parse_gender("xyz")
    assert [V.parse_status(x) for x in ["已支付", "paid", "完成", "success", "退款", "refunded", "取消", "cancelled"]] \
        == ["paid"] * 4 + ["refunded"] * 2 + ["cancelled"] * 2
    with pytest.raises(V.ParseFailure):
        V.parse_status("pending")
    assert [V.parse_platform(x) for x in ["app", "APP", "安卓", "iOS", "web", "PC", "h5", "小程序", "Mini Program"]] == \
        ["APP"] * 4 + ["web"] * 3 + ["mini-program"] * 2
    assert [V.parse_member_level(x) for x in [" 普通 ", "Regular", "银卡", "GOLD", "白金", "钻石", "VIP1", "v 3"]] == \
        ["regular", "regular", "silver", "gold", "platinum", "diamond", "vip1", "vip3"]


@pytest.mark.parametrize(("raw", "expected"), [
    ("广东省深圳市南山区科技园", ("广东", "深圳")), ("广东深圳", ("广东", "深圳")), ("深圳市", ("广东", "深圳")),
    ("内蒙古自治区呼和浩特市", ("内蒙古", "呼和浩特")), ("广西壮族自治区桂林市", ("广西", "桂林")),
    ("西藏拉萨", ("西藏", "拉萨")), ("宁夏回族自治区银川市", ("宁夏", "银川")), ("新疆乌鲁木齐", ("新疆", "乌鲁木齐")),
    ("北京市朝阳区", ("北京", "北京")), ("上海", ("上海", "上海")), ("湖南省郴州市", ("湖南", "郴州")),
])
def test_region(raw, expected):
    assert V.parse_region(raw) == expected


def test_region_unknown_fails():
    with pytest.raises(V.ParseFailure):
        V.parse_region("火星基地")
    assert V.parse_province("广西壮族自治区") == "广西"
    assert V.parse_city("深圳市") == "深圳"


# ----------------------------------------------------------------- properties
_dt = st.datetimes(min_value=datetime(1992, 1, 1), max_value=datetime(2099, 12, 30)).map(lambda d: d.replace(microsecond=0))


def _formats(d: datetime) -> list[tuple[str, datetime]]:
    day = datetime(d.year, d.month, d.day)
    return [
        (d.strftime("%Y-%m-%d %H:%M:%S"), d),
        (d.strftime("%Y-%m-%dT%H:%M:%S") + "+08:00", d),
        (f"{d.year}/{d.month}/{d.day} {d.hour}:{d.minute:02d}", d.replace(second=0)),
        (d.strftime("%Y%m%d"), day),
        (f"{d.year}年{d.month}月{d.day}日", day),
        (d.strftime("%Y%m%d%H%M%S"), d),
        (f"{d.day:02d}/{d.month:02d}/{d.year}", day),  # day-first rule reads d/m/y exports right
        (str((day - datetime(1899, 12, 30)).days), day),  # Excel serial
    ]


@settings(max_examples=60, deadline=None)
@given(_dt)
def test_timestamp_round_trip(d):
    for text, expected in _formats(d):
        assert V.parse_timestamp(text) == expected, text
    texts = [x for x, _ in _formats(d)]
    assert V.vec_timestamp(texts).to_pylist() == [e for _, e in _formats(d)]


@settings(max_examples=50, deadline=None)
@given(st.datetimes(min_value=datetime(2001, 9, 10), max_value=datetime(2033, 5, 17)))
def test_epoch_round_trip(d):
    utc = d.replace(microsecond=0)
    secs = int((utc - datetime(1970, 1, 1)).total_seconds())
    local = utc + timedelta(hours=8)  # Asia/Shanghai has had no DST since 1991
    assert V.parse_timestamp(str(secs)) == local
    assert V.parse_timestamp(str(secs * 1000)) == local
    assert V.vec_timestamp([str(secs), str(secs * 1000)]).to_pylist() == [local, local]


_ts_text = st.one_of(
    st.text(alphabet="0123456789-/:. TZ+年月日", max_size=25),
    st.builds(lambda a, b, c: f"{a}/{b}/{c}", st.integers(0, 40), st.integers(0, 40), st.integers(1890, 2210)),
    st.builds(lambda y, m, d, h, mi, s, off: f"{y:04d}-{m:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}{off}",
              st.integers(1890, 2210), st.integers(0, 13), st.integers(0, 32), st.integers(0, 25), st.integers(0, 61),
              st.integers(0, 61), st.sampled_from(["", "Z", "+08:00", "-0530", "+01", " +09:00"])),
    st.integers(0, 10**14).map(str),
)


@settings(max_examples=120, deadline=None)
@given(st.lists(_ts_text, min_size=1, max_size=20))
def test_timestamp_scalar_and_vectorized_agree(texts):
    vec = V.vec_timestamp(texts).to_pylist()
    for text, v in zip(texts, vec, strict=True):
        try:
            s = V.parse_timestamp(text)
        except V.ParseFailure:
            s = None
        assert s == v, text


@settings(max_examples=60, deadline=None)
@given(st.decimals(min_value=-10**9, max_value=10**9, places=2, allow_nan=False))
def test_amount_round_trip(x):
    f = float(x)
    forms = [f"{f:.2f}", f"¥{f:,.2f}", f"{f:,.2f}元"]
    if f >= 0:
        forms += [f"(¥{f:,.2f})", f"$ {f:,.2f}"]
    for text in forms:
        expected = -f if text.startswith("(") else f
        assert V.parse_amount(text) == pytest.approx(expected, rel=0, abs=1e-9), text
    assert V.vec_amount(forms).to_pylist() == [V.parse_amount(t) for t in forms]


_amount_text = st.one_of(
    st.text(alphabet="0123456789,. -+()¥$万元", max_size=16),
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(lambda f: f"{f:,.3f}"),
)


@settings(max_examples=120, deadline=None)
@given(st.lists(_amount_text, min_size=1, max_size=20))
def test_amount_scalar_and_vectorized_agree(texts):
    vec = V.vec_amount(texts).to_pylist()
    for text, v in zip(texts, vec, strict=True):
        try:
            s = V.parse_amount(text)
        except V.ParseFailure:
            s = None
        assert s == v, text


_bool_text = st.one_of(st.sampled_from(list(V.BOOL_SYNONYMS) + ["maybe", "是的", "", " Y "]),
                       st.sampled_from(list(V.BOOL_SYNONYMS)).map(str.upper), st.text(max_size=4))


@settings(max_examples=60, deadline=None)
@given(st.lists(_bool_text, min_size=1, max_size=20))
def test_bool_scalar_and_vectorized_agree(texts):
    vals, bad = V.vec_bool(texts)
    for text, v, b in zip(texts, vals.to_pylist(), bad.to_pylist(), strict=True):
        try:
            s, failed = V.parse_bool(text), False
        except V.ParseFailure:
            s, failed = None, True
        assert (s, failed) == (v, b), text


@given(st.booleans(), st.sampled_from([("是", "否"), ("Y", "N"), ("true", "false"), ("1", "0"), ("对", "错"),
                                       ("yes", "no"), ("真", "假")]))
def test_bool_round_trip(b, pair):
    assert V.parse_bool(pair[0] if b else pair[1]) is b


_strict = st.builds(lambda y, m, d, h, mi, s: f"{y:04d}-{m:02d}-{d:02d} {h:02d}:{mi:02d}:{s:02d}",
                    st.integers(1800, 2300), st.integers(0, 13), st.integers(0, 32), st.integers(0, 25),
                    st.integers(0, 61), st.integers(0, 61))


@settings(max_examples=40, deadline=None)
@given(st.lists(_strict, min_size=1, max_size=30), st.lists(st.decimals(-10**6, 10**6, places=3).map(str), min_size=1,
                                                            max_size=30))
def test_batch_fast_paths_agree_with_full_parsers(texts, nums):
    import pyarrow as pa

    arr = pa.array(texts, pa.string())
    assert V.all_match(arr, V.PAT_FAST_TS)
    assert V.vec_sql(arr, lambda x: V.sql_for("timestamp", arr, x)).to_pylist() == V.vec_timestamp(texts).to_pylist()
    narr = pa.array(nums, pa.string())
    fast = V.vec_sql(narr, lambda x: V.sql_for("amount", narr, x)).to_pylist()
    assert fast == V.vec_amount(nums).to_pylist() == [V.parse_amount(n) for n in nums]
