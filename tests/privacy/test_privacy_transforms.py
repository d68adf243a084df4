"""Transforms: exact mask formats, pseudonym stability, authenticated encryption, vectorized protection."""

from __future__ import annotations

import base64
import re
from datetime import date

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from custlens.errors import KeyMaterialError
from custlens.privacy.transforms import (
    decrypt,
    encrypt,
    key_id,
    mask,
    mask_first3_last4,
    mask_last4,
    normalize,
    protect_values,
    pseudonymize,
    redact,
    token_key_id,
    year_only,
)

KEY = bytes(range(32))
OTHER = bytes(range(1, 33))


@pytest.mark.parametrize(("value", "kind", "expected"), [
    ("13812341234", "phone", "138****1234"),
    ("+86 138-1234-1234", "phone", "138****1234"),
    ("440305199001011234", "id_number", "4403**********1234"),
    ("11010519491231002x", "id_number", "1101**********002X"),
    ("110105491231002", "id_number", "1101*******1002"),
    ("6222021234567890123", "bank_card", "622202*********0123"),
    ("4111 1111 1111 1111", "bank_card", "411111******1111"),
    ("alice@example.com", "email", "a***@example.com"),
    ("Bob.Smith@Mail.COM", "email", "b***@mail.com"),
    ("张三", "name", "张*"),
    ("王小明", "name", "王**"),
    ("欧阳娜娜", "name", "欧阳**"),
    ("诸葛亮", "name", "诸葛*"),
    ("广东省深圳市南山区科技园路1号", "address", "广东 深圳"),
    ("深圳市福田区福华路3号201室", "address", "广东 深圳"),
    ("浙江省杭州市西湖区文三路5号", "address", "浙江 杭州"),
    ("北京市朝阳区建国路88号", "address", "北京"),
    ("广东省韶关市浈江区风度路2号", "address", "广东 韶关"),
    ("中山路1号", "address", "***"),
    ("上海市黄浦区南京东路100号", "address", "上海"),
    ("江苏省南京市鼓楼区中山路1号", "address", "江苏 南京"),
    ("192.168.1.10", "ip", "192.168.*.*"),
    ("2001:db8::1", "ip", "2001:db8:*:*:*:*:*:*"),
    ("+44 20 7946 0958", "intl_phone", "+44 ******0958"),
    ("+1 415 555 2671", "intl_phone", "+1 ******2671"),
    ("+852 9123 4567", "intl_phone", "+852 ****4567"),
    ("+44 20 7946 0958", "phone", "+44 ******0958"),
])
def test_mask_formats(value: str, kind: str, expected: str) -> None:
    assert mask(value, kind) == expected


def test_extra_masks() -> None:
    assert mask_last4("6222021234567890") == "************7890"
    assert mask_last4("123") == "***"
    assert mask_first3_last4("13812341234") == "138****1234"
    assert mask_first3_last4("abcdefgh") == "****efgh"
    assert redact("anything at all") == "***" and redact("") == "***"
    assert year_only(date(1990, 5, 1)) == "1990" and year_only("1990-05-01") == "1990" and year_only(None) is None
    assert year_only("unknown") == "***"


@pytest.mark.parametrize("kind", ["phone", "id_number", "bank_card", "email", "name", "ip", "intl_phone"])
def test_masks_never_contain_the_value(kind: str) -> None:
    samples = {"phone": "13812345678", "id_number": "440305199001011234", "bank_card": "6222021234567890",
               "email": "zhangwei@example.com", "name": "张伟", "ip": "10.20.30.40", "intl_phone": "+4420794609581"}
    v = samples[kind]
    assert mask(v, kind) != v
    assert normalize(v, kind) not in mask(v, kind)


def test_normalize() -> None:
    assert normalize("+86 138-0013-8000", "phone") == "13800138000"
    assert normalize("0086 13800138000", "phone") == "13800138000"
    assert normalize(" A.B@Example.COM ", "email") == "a.b@example.com"
    assert normalize("11010519491231002x", "id_number") == "11010519491231002X"
    assert normalize("4111-1111 1111-1111", "bank_card") == "4111111111111111"
    assert normalize("+44 (20) 7946-0958", "intl_phone") == "+442079460958"


def test_pseudonyms_match_across_formats_and_differ_across_keys() -> None:
    forms = ["13800138000", "+86 138 0013 8000", "0086-138-0013-8000", "138-0013-8000", "+8613800138000"]
    ps = {pseudonymize(f, KEY, "phone") for f in forms}
    assert len(ps) == 1
    p = ps.pop()
    assert re.fullmatch(r"[0-9a-f]{64}", p)
    assert pseudonymize("13800138000", OTHER, "phone") != p
    assert pseudonymize("13800138001", KEY, "phone") != p
    assert pseudonymize(" A@B.com", KEY, "email") == pseudonymize("a@b.com", KEY, "email")
    # the kind is part of the message: the same digits as another kind give another pseudonym
    assert pseudonymize("13800138000", KEY, "bank_card") != p
    # a CN mobile written as an international number links to the same person
    assert pseudonymize("+86 138 0013 8000", KEY, "intl_phone") == p


def test_encrypt_round_trip_and_token_format() -> None:
    for v in ["13800138000", "广东省深圳市南山区科技园路1号", "", "a" * 1000]:
        tok = encrypt(v, KEY)
        assert decrypt(tok, KEY) == v
        prefix, kid, b64 = tok.split(":", 2)
        assert prefix == "v1" and kid == key_id(KEY) and token_key_id(tok) == kid
        assert len(base64.b64decode(b64)) == 12 + len(v.encode()) + 16
    assert encrypt("x", KEY) != encrypt("x", KEY)  # random nonce
    assert key_id(KEY) != key_id(OTHER)


def test_decrypt_with_wrong_key_or_corrupt_token_raises() -> None:
    tok = encrypt("13800138000", KEY)
    with pytest.raises(KeyMaterialError, match="different key"):
        decrypt(tok, OTHER)
    prefix, kid, b64 = tok.split(":", 2)
    raw = bytearray(base64.b64decode(b64))
    raw[-1] ^= 1
    with pytest.raises(KeyMaterialError, match="authentication"):
        decrypt(f"{prefix}:{kid}:{base64.b64encode(bytes(raw)).decode()}", KEY)
    for bad in ["13800138000", "v1:zz:abc", f"v1:{kid}:not base64!", f"v1:{kid}:" + base64.b64encode(b"x").decode()]:
        with pytest.raises(KeyMaterialError):
            decrypt(bad, KEY)
    with pytest.raises(KeyMaterialError, match="32 bytes"):
        encrypt("x", b"short")


def test_protect_values_vectorized() -> None:
    values = ["13800138000", None, "+86 138 0013 8000", float("nan"), "13900139000", "13800138000", pd.NA]
    display, pseudo, enc = protect_values(values, "phone", KEY)  # type: ignore[arg-type]
    assert display == ["138****8000", None, "138****8000", None, "139****9000", "138****8000", None]
    assert pseudo[6] is None and enc[6] is None and mask(None, "name") == ""
    assert pseudo[1] is None and enc[1] is None and pseudo[3] is None and enc[3] is None
    assert pseudo[0] == pseudo[2] == pseudo[5] == pseudonymize("13800138000", KEY, "phone")
    assert pseudo[4] != pseudo[0]
    assert decrypt(enc[2], KEY) == "+86 138 0013 8000"  # type: ignore[arg-type]
    assert enc[0] != enc[5]
    assert protect_values([], "email", KEY) == ([], [], [])


def test_protect_values_scales() -> None:
    n = 50_000
    values = [f"user{i}@example.com" for i in range(n)]
    display, pseudo, enc = protect_values(values, "email", KEY)
    assert len(set(pseudo)) == n and len(set(enc)) == n
    assert display[123] == "u***@example.com"
    assert decrypt(enc[-1], KEY) == values[-1]  # type: ignore[arg-type]


@settings(deadline=None, max_examples=100)
@given(st.text(max_size=50))
def test_encrypt_round_trip_property(s: str) -> None:
    assert decrypt(encrypt(s, KEY), KEY) == s
