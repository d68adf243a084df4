"""Recognizers: labelled precision/recall, look-alikes, column detection, and property tests.

The labelled set tests/data/pii_labelled.csv was written by `python tests/privacy/test_privacy_recognizers.py`
(build_labelled_rows below, fixed seed); ID check digits and Luhn digits are computed here independently
of custlens so the validators are checked against a second implementation.
"""

from __future__ import annotations

import csv
import random
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from custlens.privacy.recognizers import (
    PiiDetection,
    detect_column,
    detect_value,
    id_shaped,
    is_bank_card,
    is_cn_address,
    is_cn_id_number,
    is_cn_mobile,
    is_cn_name,
    is_email,
    is_intl_phone,
    is_ipv4,
    is_ipv6,
)

LABELLED = Path(__file__).parent.parent / "data" / "pii_labelled.csv"
KINDS = ("phone", "id_number", "bank_card", "email", "ip", "intl_phone", "name", "address")

# ----------------------------------------------------------------------------------------------
# Independent generators (used for the labelled file and the property tests)
# ----------------------------------------------------------------------------------------------

REGIONS = ["110105", "310104", "440305", "440106", "330106", "320102", "510107", "420106", "370202", "500103",
           "610113", "350203", "210202", "650102", "450103", "130102", "230103", "530102"]
WEIGHTS = [2 ** (17 - i) % 11 for i in range(17)]  # ISO 7064 MOD 11-2 weights, derived rather than copied


def id_check(first17: str) -> str:
    r = (12 - sum(int(c) * w for c, w in zip(first17, WEIGHTS, strict=True)) % 11) % 11
    return "X" if r == 10 else str(r)


def make_id18(region: str, born: date, seq: int) -> str:
    first17 = f"{region}{born:%Y%m%d}{seq:03d}"
    return first17 + id_check(first17)


def make_id15(region: str, born: date, seq: int) -> str:
    return f"{region}{born:%y%m%d}{seq:03d}"


def luhn_check(body: str) -> str:
    total = 0
    for i, c in enumerate(reversed(body)):
        n = int(c)
        if i % 2 == 0:
            n *= 2
            n = n - 9 if n > 9 else n
        total += n
    return str((10 - total % 10) % 10)


def make_card(prefix: str, length: int, rng: random.Random) -> str:
    body = prefix + "".join(rng.choice("0123456789") for _ in range(length - len(prefix) - 1))
    return body + luhn_check(body)


def _mobile(rng: random.Random) -> str:
    return "1" + rng.choice("3456789") + "".join(rng.choice("0123456789") for _ in range(9))


def _fmt_mobile(m: str, style: int) -> str:
    return [m, f"+86{m}", f"+86 {m[:3]} {m[3:7]} {m[7:]}", f"0086-{m}", f"{m[:3]}-{m[3:7]}-{m[7:]}",
            f"{m[:3]} {m[3:7]} {m[7:]}"][style % 6]


SURN = list("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾萧田董")
COMPOUND = ["欧阳", "司马", "诸葛", "上官", "司徒", "慕容", "令狐", "夏侯"]
GIVEN = list("伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉萍红文辉建国志鹏宇浩婷雪琳晨欣怡子涵梓轩博思")
PLACES = [("广东省", "深圳市", "南山区"), ("广东省", "广州市", "天河区"), ("浙江省", "杭州市", "西湖区"),
          ("江苏省", "南京市", "鼓楼区"), ("四川省", "成都市", "武侯区"), ("湖北省", "武汉市", "洪山区"),
          ("", "北京市", "朝阳区"), ("", "上海市", "浦东新区"), ("山东省", "青岛市", "市南区"),
          ("福建省", "厦门市", "思明区"), ("", "重庆市", "渝中区"), ("陕西省", "西安市", "雁塔区")]
ROADS = ["科技园", "中山", "人民", "解放", "建设", "和平", "文化", "滨海", "长江", "黄河"]

NEGATIVE = [
    # product names, places, business words, categories
    "马克杯", "华为手机", "小米手环", "牛仔裤", "金龙鱼调和油", "黄油饼干", "白酒礼盒", "蓝牙耳机", "保温杯", "运动鞋",
    "高端礼盒装", "周年庆活动", "陈醋500ml", "苹果", "iPhone 15 Pro", "Nike Air Max", "王府井店", "林氏木业沙发",
    "深圳", "广州市", "黄山", "常州", "北京", "南山区", "广东省", "包头", "金华",
    "白银", "黄金", "铂金", "钻石", "普通", "银联", "官网", "门店", "华东", "安卓", "微信", "支付宝", "未知",
    "男", "女", "已支付", "退款", "服装", "数码", "食品", "美妆",
    # numbers that are not personal data
    "0", "42", "3.14", "199.00", "-15", "2024-05-12", "2024/05/12 13:45:00", "1", "100000",
    "ORD-20240512-0001", "SKU12345", "a3f9c2", "N/A", "null", "-", "abc", "hello world",
    # invalid emails and IPs
    "user@", "@example.com", "user@@example.com", "user@example", "user example@x.com", "999.1.1.1",
    "192.168.1", "1.2.3.4.5", "12345::abcd::1", "256.256.256.256",
]


def build_labelled_rows(seed: int = 20240512) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    rows: list[tuple[str, str]] = []

    def born() -> date:
        return date(1950, 1, 1) + timedelta(days=rng.randrange(0, 365 * 55))

    for i in range(30):
        rows.append((_fmt_mobile(_mobile(rng), i), "phone"))
    ids18 = []
    while len(ids18) < 30 or not any(x.endswith("X") for x in ids18):
        ids18.append(make_id18(rng.choice(REGIONS), born(), rng.randrange(1000)))
    rows += [(x, "id_number") for x in ids18[:29]] + [(next(x for x in ids18 if x.endswith("X")), "id_number")]
    for _ in range(10):
        b = date(1930, 1, 1) + timedelta(days=rng.randrange(0, 365 * 69))
        rows.append((make_id15(rng.choice(REGIONS), b, rng.randrange(1000)), "id_number"))
    for i in range(28):
        prefix, length = [("62", 16), ("62", 19), ("4", 16), ("51", 16), ("55", 16), ("622202", 19),
                          ("2221", 16)][i % 7]
        card = make_card(prefix, length, rng)
        if id_shaped(card):  # vanishingly rare: an ID-shaped number is a typo'd ID, never a card
            continue
        if i % 4 == 3 and length == 16:
            card = " ".join(card[j:j + 4] for j in range(0, 16, 4))
        rows.append((card, "bank_card"))
    users = ["zhang.wei", "lina88", "wang_fang", "chen-jie", "Li.Na", "alice", "bob.smith", "x1", "hr+news",
             "service"]
    domains = ["qq.com", "163.com", "gmail.com", "example.com", "company.com.cn", "sina.cn", "Outlook.com"]
    for i in range(20):
        rows.append((f"{users[i % len(users)]}{i if i > 9 else ''}@{domains[i % len(domains)]}", "email"))
    for _ in range(10):
        rows.append((".".join(str(rng.randrange(1, 255)) for _ in range(4)), "ip"))
    rows += [("2001:db8::1", "ip"), ("fe80::1ff:fe23:4567:890a", "ip"), ("2408:8207:1850:2b0::25", "ip"),
             ("::1", "ip"), ("240e:3a1:4c3a:9f50:8d4e:2a1b:3c4d:5e6f", "ip")]
    rows += [(x, "intl_phone") for x in (
        "+1 415 555 2671", "+44 20 7946 0958", "+81 3-1234-5678", "+852 9123 4567", "+65 8123 4567",
        "+49 30 901820", "+33 1 42 68 53 00", "+61 2 9374 4000", "+886 912 345 678", "+7 495 123-45-67",
        "+82 10-1234-5678", "+1-212-555-0199")]
    for i in range(25):
        if i % 5 == 0:
            name = rng.choice(COMPOUND) + "".join(rng.choice(GIVEN) for _ in range(1 + i % 2))
        else:
            name = rng.choice(SURN) + "".join(rng.choice(GIVEN) for _ in range(1 + (i % 3 > 0)))
        rows.append((name, "name"))
    for i in range(20):
        prov, city, dist = rng.choice(PLACES)
        road = rng.choice(ROADS)
        tail = [f"{road}路{rng.randrange(1, 999)}号", f"{road}街{rng.randrange(1, 99)}号{rng.randrange(1, 30)}栋"
                f"{rng.randrange(101, 2999)}室", f"{road}花园小区{rng.randrange(1, 20)}栋",
                f"{road}大道{rng.randrange(1, 500)}号"][i % 4]
        lead = city if i % 3 == 0 else prov + city
        rows.append((f"{lead}{dist}{tail}", "address"))

    # look-alikes: IDs with a wrong check digit, cards failing Luhn, 12-digit numbers, order ids, landlines
    for _ in range(15):
        good = make_id18(rng.choice(REGIONS), born(), rng.randrange(1000))
        wrong = rng.choice([c for c in "0123456789X" if c != good[-1]])
        rows.append((good[:-1] + wrong, "none"))
    for i in range(15):
        good = make_card(["62", "4", "51"][i % 3], [16, 19, 16][i % 3], rng)
        rows.append((good[:-1] + str((int(good[-1]) + 1 + rng.randrange(9)) % 10), "none"))
    for _ in range(10):
        rows.append((str(rng.randrange(10 ** 11, 10 ** 12)), "none"))
    for _ in range(10):
        d = date(2023, 1, 1) + timedelta(days=rng.randrange(700))
        rows.append((f"{d:%Y%m%d}{rng.randrange(10 ** 4):04d}", "none"))
    for _ in range(6):
        d = date(2023, 1, 1) + timedelta(days=rng.randrange(700))
        rows.append((f"{d:%Y%m%d}{rng.randrange(10 ** 10):010d}", "none"))  # 18-digit order ids
    rows += [(x, "none") for x in ("010-12345678", "0755-88889999", "021 6234 5678", "(020) 3888 1234", "4008123123",
                                   "400-810-8888", "95588", "12345678", "1234567890", "12345678901",
                                   "10086", "22345678901")]
    rows += [(x, "none") for x in NEGATIVE]
    return rows


def write_labelled(path: Path = LABELLED) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["value", "kind"])
        w.writerows(build_labelled_rows())


def load_labelled() -> list[tuple[str, str]]:
    with LABELLED.open(encoding="utf-8") as f:
        return [(r["value"], r["kind"]) for r in csv.DictReader(f)]


# ----------------------------------------------------------------------------------------------
# Labelled set
# ----------------------------------------------------------------------------------------------

def test_labelled_file_is_large_and_covers_every_kind() -> None:
    rows = load_labelled()
    kinds = Counter(k for _, k in rows)
    assert len(rows) >= 200
    assert set(kinds) == {*KINDS, "none"}
    assert kinds["none"] >= 60
    assert any(v.startswith("62") for v, k in rows if k == "bank_card")
    assert any(len(v) == 15 for v, k in rows if k == "id_number")


@pytest.mark.parametrize("kind", KINDS)
def test_precision_and_recall_per_kind(kind: str) -> None:
    rows = load_labelled()
    got = [(detect_value(v), k) for v, k in rows]
    tp = sum(1 for d, k in got if d == kind and k == kind)
    flagged = sum(1 for d, _ in got if d == kind)
    actual = sum(1 for _, k in got if k == kind)
    misses = [v for (v, k), (d, _) in zip(rows, got, strict=True) if (k == kind) != (d == kind)]
    assert flagged and tp / flagged >= 0.95, misses
    assert tp / actual >= 0.95, misses


def test_no_look_alike_is_flagged_as_id_or_card() -> None:
    flagged = [(v, detect_value(v)) for v, k in load_labelled()
               if k == "none" and detect_value(v) in ("id_number", "bank_card", "phone")]
    assert flagged == []


def test_ids_in_labelled_file_agree_with_independent_check_digit() -> None:
    for v, k in load_labelled():
        if k == "id_number" and len(v) == 18:
            assert v[-1] == id_check(v[:17])
            assert is_cn_id_number(v.lower())  # lower-case x accepted


# ----------------------------------------------------------------------------------------------
# Validators, single cases
# ----------------------------------------------------------------------------------------------

def test_mobile_variants() -> None:
    assert is_cn_mobile("+86 138-0013-8000") and is_cn_mobile("0086 13800138000") and is_cn_mobile("19912345678")
    assert not is_cn_mobile("12800138000")  # 12x is not a mobile block
    assert not is_cn_mobile("1380013800")  # 10 digits
    assert not is_cn_mobile("138001380001")  # 12 digits
    assert not is_cn_mobile("+87 13800138000")


def test_id_number_rules() -> None:
    good = make_id18("440305", date(1990, 2, 28), 123)
    assert is_cn_id_number(good)
    assert not is_cn_id_number("99" + good[2:])  # no such region
    assert not is_cn_id_number(make_id18("440305", date(1990, 2, 28), 123)[:10] + "0230" + good[14:])  # 30 Feb
    future = make_id18("440305", date.today() + timedelta(days=400), 1)
    assert not is_cn_id_number(future)
    assert is_cn_id_number("110105491231002")
    assert not is_cn_id_number("110105491331002")  # month 13


def test_bank_card_rules() -> None:
    assert is_bank_card("4111 1111 1111 1111") and is_bank_card("4111-1111-1111-1111")
    card = make_card("62", 19, random.Random(1))
    assert is_bank_card(card)
    assert not is_bank_card(card[:-1] + str((int(card[-1]) + 5) % 10))
    assert not is_bank_card("411111111111111")  # 15 digits
    for n in range(10):  # order ids starting with a date are never cards, whatever their Luhn digit
        assert not is_bank_card(f"202405120001234{n}")


def test_email_ip_intl() -> None:
    assert is_email("Zhang.Wei+news@Mail.Example.com.cn") and not is_email("a@b") and not is_email("a b@c.com")
    assert is_ipv4("10.0.0.1") and not is_ipv4("10.0.0.256") and not is_ipv4("1.2.3")
    assert is_ipv6("2001:db8::1") and not is_ipv6("2001:db8:::1") and not is_ipv6("12:34")
    assert is_intl_phone("+44 20 7946 0958") and not is_intl_phone("+86 138 0013 8000")
    assert not is_intl_phone("010-12345678") and not is_intl_phone("+1 23")


def test_names_and_addresses() -> None:
    for n in ("张伟", "欧阳娜娜", "诸葛亮", "司马懿", "李小龙", "王芳"):
        assert is_cn_name(n), n
    for n in ("马克杯", "深圳", "常州", "黄金", "张", "张伟伟伟伟", "Alice", "华为手机", "牛仔裤"):
        assert not is_cn_name(n), n
    assert is_cn_address("广东省深圳市南山区科技园路1号")
    assert is_cn_address("上海市浦东新区世纪大道100号")
    assert is_cn_address("杭州市西湖区文三路翠苑小区3栋502室")
    assert not is_cn_address("广东省深圳市")  # no detailed part
    assert not is_cn_address("中山路1号")  # no province or city
    assert not is_cn_address("南京东路100号3楼")  # a street named after a city is not the city


# ----------------------------------------------------------------------------------------------
# Column detection
# ----------------------------------------------------------------------------------------------

def test_detect_column_by_header_content_and_both() -> None:
    phones = ["13800138000", "+86 139 0013 9000", "13700137000", None, "", float("nan"), pd.NA]
    assert detect_column("手机号", phones) == PiiDetection("phone", "both", 1.0, "手机号")
    d = detect_column("col_7", phones)
    assert d is not None and (d.kind, d.by) == ("phone", "content")
    assert detect_column("Email", []) == PiiDetection("email", "name", 0.0, "Email")
    assert detect_column("银行卡号", ["x"]).kind == "bank_card"  # type: ignore[union-attr]
    assert detect_column("notes", ["hello", "world"]) is None


def test_detect_column_thresholds() -> None:
    half = ["13800138000", "13900139000", "x", "y"]
    assert detect_column("c", half) is None
    assert detect_column("c", half, min_share=0.5) is not None
    ids = [make_id18("110105", date(1980, 1, 1) + timedelta(days=i * 37), i) for i in range(10)]
    assert detect_column("c", ids).kind == "id_number"  # type: ignore[union-attr]


def test_detect_column_does_not_call_products_or_cities_names() -> None:
    products = ["马克杯", "华为手机", "牛仔裤", "保温杯", "蓝牙耳机", "运动鞋", "黄油饼干"]
    assert detect_column("name", products) is None
    assert detect_column("商品名称", products) is None
    cities = ["深圳", "广州", "北京", "上海", "杭州", "常州", "黄山", "金华"]
    assert detect_column("城市", cities) is None
    assert detect_column("c", cities) is None


def test_detect_column_names_need_a_hint_or_very_high_share() -> None:
    names = ["张伟", "李娜", "王芳", "刘强", "陈静", "欧阳娜娜", "杨洋", "x1", "x2", "x3"]  # 70%
    assert detect_column("col_3", names) is None
    assert detect_column("收件人", names).kind == "name"  # type: ignore[union-attr]
    assert detect_column("col_3", names[:7]).kind == "name"  # type: ignore[union-attr]
    addrs = ["广东省深圳市南山区科技园路1号", "北京市朝阳区建国路88号", "浙江省杭州市西湖区文三路5号", "n/a"]
    assert detect_column("备注", addrs) is None
    assert detect_column("收货地址", addrs).kind == "address"  # type: ignore[union-attr]


# ----------------------------------------------------------------------------------------------
# Property tests
# ----------------------------------------------------------------------------------------------

births = st.dates(min_value=date(1900, 1, 1), max_value=date.today())
regions = st.sampled_from(REGIONS)
seqs = st.integers(min_value=0, max_value=999)


@settings(deadline=None, max_examples=200)
@given(regions, births, seqs)
def test_any_generated_id_passes(region: str, born: date, seq: int) -> None:
    v = make_id18(region, born, seq)
    assert is_cn_id_number(v)
    assert detect_value(v) == "id_number"


@settings(deadline=None, max_examples=200)
@given(regions, births, seqs, st.sampled_from(list("0123456789X")))
def test_changing_the_check_digit_fails(region: str, born: date, seq: int, other: str) -> None:
    v = make_id18(region, born, seq)
    assume(other != v[-1])
    bad = v[:-1] + other
    assert not is_cn_id_number(bad)
    assert detect_value(bad) is None


@settings(deadline=None, max_examples=200)
@given(st.sampled_from(["62", "4", "51", "622202", "2720"]), st.integers(16, 19), st.randoms(use_true_random=False),
       st.integers(1, 9))
def test_luhn_cards_pass_and_one_digit_change_fails(prefix: str, length: int, rnd: random.Random, delta: int) -> None:
    card = make_card(prefix, length, rnd)
    assume(not id_shaped(card))
    assert is_bank_card(card)
    pos = rnd.randrange(len(prefix), length)
    changed = card[:pos] + str((int(card[pos]) + delta) % 10) + card[pos + 1:]
    assert not is_bank_card(changed)


@settings(deadline=None, max_examples=200)
@given(st.sampled_from("3456789"), st.text("0123456789", min_size=9, max_size=9), st.integers(0, 5))
def test_mobiles_in_any_format_pass(second: str, rest: str, style: int) -> None:
    m = "1" + second + rest
    assert is_cn_mobile(_fmt_mobile(m, style))
    assert not is_cn_mobile(m + "0") and not is_cn_mobile(m[:-1])


@settings(deadline=None, max_examples=200)
@given(st.text(max_size=30))
def test_detect_value_never_raises(s: str) -> None:
    assert detect_value(s) in (None, *KINDS)


if __name__ == "__main__":
    write_labelled()
    print(f"wrote {LABELLED}")
