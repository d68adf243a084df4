"""Value parsers for ingest: timestamps, dates, amounts, booleans and categorical standardizers.

Every parser has a scalar pure-Python form (property tests, error messages) and a vectorized form
(DuckDB SQL over Arrow batches, or a dictionary map over an Arrow array) that gives the same answers.
Scalar parsers return None for an empty value and raise ParseFailure for a value they cannot read.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.compute as pc

DEFAULT_TZ = "Asia/Shanghai"
TRIM_CHARS = " \t\r\n\u3000\xa0"
YEAR_MIN, YEAR_MAX = 1900, 2199
SERIAL_MIN, SERIAL_MAX = 20000, 73050  # Excel serial days: 1954-10-03 … 2099-12-31
EXCEL_EPOCH = datetime(1899, 12, 30)


class ParseFailure(ValueError):
    """A non-empty value that the parser cannot read."""

    def __init__(self, kind: str, value: str) -> None:
        self.kind = kind
        self.value = value
        super().__init__(f"cannot read {value!r} as {kind}")


def clean(s: object) -> str | None:
    """Trim spaces (incl. full-width); empty becomes None."""
    if s is None:
        return None
    v = str(s).strip(TRIM_CHARS)
    return v or None


def sql_clean(x: str) -> str:
    """SQL twin of clean()."""
    return f"nullif(trim({x}, ' ' || chr(9) || chr(13) || chr(10) || chr(12288) || chr(160)), '')"


# ---------------------------------------------------------------- timestamps
_TIME = r"(?:(?:T| +)([0-9]{1,2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,9}))?)?)?"
PAT_ISO = r"^([0-9]{4})[-/.]([0-9]{1,2})[-/.]([0-9]{1,2})" + _TIME + r" *(Z|z|[+-][0-9]{2}(?::?[0-9]{2})?)?$"
PAT_FAST_TS = r"^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}$"  # SQL fast path, same answers
PAT_ZH = r"^([0-9]{4})年([0-9]{1,2})月([0-9]{1,2})[日号]?(?: *([0-9]{1,2}):([0-9]{2})(?::([0-9]{2}))?)?$"
PAT_COMPACT = r"^([0-9]{4})([0-9]{2})([0-9]{2})(?:[T ]?([0-9]{2})([0-9]{2})([0-9]{2}))?$"
PAT_DMY = r"^([0-9]{1,2})[-/.]([0-9]{1,2})[-/.]([0-9]{4})(?:(?:T| +)([0-9]{1,2}):([0-9]{2})(?::([0-9]{2}))?)?$"
PAT_SERIAL = r"^([0-9]{5})(?:\.([0-9]{1,9}))?$"
PAT_EPOCH_S = r"^([0-9]{9,10})(?:\.([0-9]{1,6}))?$"
PAT_EPOCH_MS = r"^([0-9]{12,13})$"

_RX = {k: re.compile(v) for k, v in {"iso": PAT_ISO, "zh": PAT_ZH, "compact": PAT_COMPACT, "dmy": PAT_DMY,
                                     "serial": PAT_SERIAL, "es": PAT_EPOCH_S, "ems": PAT_EPOCH_MS}.items()}


def _frac_us(fr: str | None) -> int:
    return int((fr or "")[:6].ljust(6, "0")) if fr else 0


def _offset_min(tz: str | None) -> int | None:
    if not tz:
        return None
    if tz in ("Z", "z"):
        return 0
    sign = -1 if tz[0] == "-" else 1
    digits = tz[1:].replace(":", "")
    return sign * (int(digits[:2]) * 60 + (int(digits[2:4]) if len(digits) > 2 else 0))


def _build(y: int, mo: int, d: int, hh: int, mi: int, ss: int, us: int) -> datetime | None:
    if not (YEAR_MIN <= y <= YEAR_MAX and hh <= 23 and mi <= 59 and ss <= 59):
        return None
    try:
        return datetime(y, mo, d, hh, mi, 0) + timedelta(microseconds=ss * 1_000_000 + us)
    except ValueError:
        return None


def _utc_to_local(ts: datetime, tz: str) -> datetime:
    return ts.replace(tzinfo=UTC).astimezone(ZoneInfo(tz)).replace(tzinfo=None)


def _ts_or_none(v: str, tz: str) -> datetime | None:
    i = lambda g: int(g) if g else 0  # noqa: E731
    if m := _RX["iso"].match(v):
        y, mo, d, hh, mi, ss, fr, off = m.groups()
        ts = _build(int(y), int(mo), int(d), i(hh), i(mi), i(ss), _frac_us(fr))
        o = _offset_min(off)
        if ts is not None and o is not None:
            ts = _utc_to_local(ts - timedelta(minutes=o), tz)
        return ts
    if m := _RX["zh"].match(v):
        y, mo, d, hh, mi, ss = m.groups()
        return _build(int(y), int(mo), int(d), i(hh), i(mi), i(ss), 0)
    if m := _RX["compact"].match(v):
        y, mo, d, hh, mi, ss = m.groups()
        return _build(int(y), int(mo), int(d), i(hh), i(mi), i(ss), 0)
    if m := _RX["dmy"].match(v):
        a, b, y, hh, mi, ss = m.groups()
        a, b = int(a), int(b)
        day, month = (b, a) if (b > 12 and a <= 12) else (a, b)  # day-first unless the second part is > 12
        return _build(int(y), month, day, i(hh), i(mi), i(ss), 0)
    if m := _RX["serial"].match(v):
        days, fr = m.groups()
        n = int(days)
        if not (SERIAL_MIN <= n <= SERIAL_MAX):
            return None
        secs = math.floor(float("0." + fr) * 86400 + 0.5) if fr else 0
        return EXCEL_EPOCH + timedelta(days=n, seconds=secs)
    if m := _RX["es"].match(v):
        sec, fr = m.groups()
        return _utc_to_local(datetime(1970, 1, 1) + timedelta(seconds=int(sec), microseconds=_frac_us(fr)), tz)
    if m := _RX["ems"].match(v):
        return _utc_to_local(datetime(1970, 1, 1) + timedelta(milliseconds=int(m.group(1))), tz)
    return None


def parse_timestamp(value: object, tz: str = DEFAULT_TZ) -> datetime | None:
    """Read an exported timestamp; offsets and epochs convert to `tz` and come back naive local."""
    v = clean(value)
    if v is None:
        return None
    ts = _ts_or_none(v, tz)
    if ts is None:
        raise ParseFailure("timestamp", v)
    return ts


def parse_date(value: object, tz: str = DEFAULT_TZ) -> date | None:
    """A date: any timestamp form, truncated to its (local) day."""
    v = clean(value)
    if v is None:
        return None
    ts = _ts_or_none(v, tz)
    if ts is None:
        raise ParseFailure("date", v)
    return ts.date()


def _q(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _sql_build(y: str, mo: str, d: str, hh: str, mi: str, ss: str, us: str) -> str:
    return (f"CASE WHEN {y} BETWEEN {YEAR_MIN} AND {YEAR_MAX} AND {hh} <= 23 AND {mi} <= 59 AND {ss} <= 59 "
            f"THEN try(make_timestamp({y}, {mo}, {d}, {hh}, {mi}, 0)) + to_microseconds({ss} * 1000000 + {us}) END")


def _g(r: str, name: str) -> str:
    return f"coalesce(nullif({r}.{name}, '')::BIGINT, 0)"


def _sql_us(r: str, name: str) -> str:
    return f"coalesce(nullif(rpad(left({r}.{name}, 6), 6, '0'), '000000')::BIGINT, 0)"


def _sql_local(utc: str, tz: str) -> str:
    return f"timezone({_q(tz)}, timezone('UTC', {utc}))"


def _bind(t: str, pat: str, names: list[str], body: str) -> str:
    lst = "[" + ", ".join(_q(n) for n in names) + "]"
    return f"list_transform([regexp_extract({t}, {_q(pat)}, {lst})], lambda r: {body})[1]"


def sql_timestamp(x: str, tz: str = DEFAULT_TZ) -> str:
    """SQL expression over a cleaned VARCHAR expression `x` giving TIMESTAMP (NULL when unreadable)."""
    n6 = ["y", "mo", "d", "hh", "mi", "ss"]
    off = ("(CASE WHEN r.tz IN ('Z','z') THEN 0 ELSE (CASE WHEN left(r.tz,1)='-' THEN -1 ELSE 1 END) * "
           "(substr(replace(r.tz, ':', ''), 2, 2)::BIGINT * 60 + "
           "coalesce(nullif(substr(replace(r.tz, ':', ''), 4, 2), '')::BIGINT, 0)) END)")
    iso_ts = _sql_build(*[_g("r", n) for n in n6], _sql_us("r", "fr"))
    iso = _bind(x, PAT_ISO, [*n6, "fr", "tz"],
                f"CASE WHEN r.tz = '' THEN {iso_ts} ELSE {_sql_local(f'({iso_ts}) - to_minutes({off})', tz)} END")
    plain = _sql_build(*[_g("r", n) for n in n6], "0")
    zh = _bind(x, PAT_ZH, n6, plain)
    compact = _bind(x, PAT_COMPACT, n6, plain)
    a, b = _g("r", "a"), _g("r", "b")
    day = f"(CASE WHEN {b} > 12 AND {a} <= 12 THEN {b} ELSE {a} END)"
    month = f"(CASE WHEN {b} > 12 AND {a} <= 12 THEN {a} ELSE {b} END)"
    dmy = _bind(x, PAT_DMY, ["a", "b", "y", "hh", "mi", "ss"],
                _sql_build(_g("r", "y"), month, day, _g("r", "hh"), _g("r", "mi"), _g("r", "ss"), "0"))
    serial = _bind(x, PAT_SERIAL, ["n", "fr"],
                   f"CASE WHEN r.n::BIGINT BETWEEN {SERIAL_MIN} AND {SERIAL_MAX} THEN TIMESTAMP '1899-12-30' "
                   f"+ to_days(r.n::BIGINT) + to_seconds(CASE WHEN r.fr = '' THEN 0 ELSE "
                   f"floor(('0.' || r.fr)::DOUBLE * 86400 + 0.5)::BIGINT END) END")
    es = _bind(x, PAT_EPOCH_S, ["s", "fr"],
               _sql_local(f"make_timestamp(r.s::BIGINT * 1000000 + {_sql_us('r', 'fr')})", tz))
    ems = _sql_local(f"make_timestamp(({x})::BIGINT * 1000)", tz)
    fast = sql_timestamp_fast(x)
    return (f"(CASE WHEN {x} IS NULL THEN NULL "
            f"WHEN regexp_full_match({x}, {_q(PAT_FAST_TS)}) THEN {fast} "
            f"WHEN regexp_full_match({x}, {_q(PAT_ISO)}) THEN {iso} "
            f"WHEN regexp_full_match({x}, {_q(PAT_EPOCH_S)}) THEN {es} "
            f"WHEN regexp_full_match({x}, {_q(PAT_COMPACT)}) THEN {compact} "
            f"WHEN regexp_full_match({x}, {_q(PAT_ZH)}) THEN {zh} "
            f"WHEN regexp_full_match({x}, {_q(PAT_DMY)}) THEN {dmy} "
            f"WHEN regexp_full_match({x}, {_q(PAT_SERIAL)}) THEN {serial} "
            f"WHEN regexp_full_match({x}, {_q(PAT_EPOCH_MS)}) THEN {ems} END)")


def sql_timestamp_fast(x: str) -> str:
    """sql_timestamp for values already known to match PAT_FAST_TS (yyyy-mm-dd hh:mm:ss), without regexes."""
    return (f"(CASE WHEN left({x}, 4)::INT BETWEEN {YEAR_MIN} AND {YEAR_MAX} AND substr({x}, 18, 2)::INT <= 59 "
            f"THEN try_strptime({x}, '%Y-%m-%d %H:%M:%S') END)")


def all_match(arr: pa.Array | pa.ChunkedArray, pattern: str) -> bool:
    """True when every non-null value matches `pattern` (and there is at least one)."""
    nn = pc.drop_null(arr)
    return len(nn) > 0 and bool(pc.all(pc.match_substring_regex(nn, pattern)).as_py())


def sql_for(kind: str, arr: pa.Array, x: str, tz: str = DEFAULT_TZ) -> str:
    """The SQL parser for a batch column: a regex-free fast form when the whole batch is in the common format."""
    if kind == "timestamp":
        return sql_timestamp_fast(x) if all_match(arr, PAT_FAST_TS) else sql_timestamp(x, tz)
    if kind == "date":
        return f"CAST({sql_for('timestamp', arr, x, tz)} AS DATE)"
    if kind == "amount":
        return f"({x})::DOUBLE" if all_match(arr, PAT_FAST_NUM) else sql_amount(x)
    raise ValueError(kind)


def sql_date(x: str, tz: str = DEFAULT_TZ) -> str:
    """SQL twin of parse_date."""
    return f"CAST({sql_timestamp(x, tz)} AS DATE)"


# ---------------------------------------------------------------- amounts / numbers
PAT_AMOUNT = (r"^(\()? *([-+])? *(?:[¥￥$]|RMB|CNY|USD)? *([-+])? *([0-9][0-9,. ]*[0-9]|[0-9]|\.[0-9]+) *"
              r"(万|亿)? *(?:元|RMB|CNY|USD)? *(\))?$")
PAT_FAST_NUM = r"^-?[0-9]{1,15}(?:\.[0-9]{1,15})?$"  # SQL fast path for plain numbers
PAT_US = r"^(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?$|^\.[0-9]+$"
PAT_SPACE = r"^[0-9]{1,3}(?: [0-9]{3})+(?:\.[0-9]+)?$"
PAT_EU = r"^[0-9]{1,3}(?:[ .][0-9]{3})*,[0-9]{1,2}$"
_RX_AMOUNT, _RX_US, _RX_SPACE, _RX_EU = (re.compile(p) for p in (PAT_AMOUNT, PAT_US, PAT_SPACE, PAT_EU))
_SCALE = {"万": 10000.0, "亿": 100000000.0}


def _amount_or_none(v: str) -> float | None:
    m = _RX_AMOUNT.match(v)
    if not m:
        return None
    lp, s1, s2, num, unit, rp = m.groups()
    if bool(lp) != bool(rp) or (s1 and s2) or (lp and (s1 or s2)):
        return None
    if _RX_US.match(num):
        x = float(num.replace(",", ""))
    elif _RX_SPACE.match(num):
        x = float(num.replace(" ", ""))
    elif _RX_EU.match(num):
        x = float(num.replace(" ", "").replace(".", "").replace(",", "."))
    else:
        return None
    if unit:
        x = x * _SCALE[unit]
    if lp or (s1 or s2) == "-":
        x = -x
    return x


def parse_amount(value: object) -> float | None:
    """Read a money amount: ¥1,299.00, $1,299.50, 1 299,00, 1.2万, (1,299.00) negative, -12.5."""
    v = clean(value)
    if v is None:
        return None
    x = _amount_or_none(v)
    if x is None:
        raise ParseFailure("amount", v)
    return x


def parse_number(value: object) -> float | None:
    """A plain number (same grammar as amounts, currency signs allowed)."""
    v = clean(value)
    if v is None:
        return None
    x = _amount_or_none(v)
    if x is None:
        raise ParseFailure("number", v)
    return x


def parse_int(value: object) -> int | None:
    """An integer: a number with no fractional part."""
    v = clean(value)
    if v is None:
        return None
    x = _amount_or_none(v)
    if x is None or x != math.floor(x) or abs(x) >= 2**62:
        raise ParseFailure("integer", v)
    return int(x)


def sql_amount(x: str) -> str:
    """SQL twin of parse_amount (DOUBLE, NULL when unreadable)."""
    num = (f"(CASE WHEN regexp_full_match(r.num, {_q(PAT_US)}) THEN replace(r.num, ',', '')::DOUBLE "
           f"WHEN regexp_full_match(r.num, {_q(PAT_SPACE)}) THEN replace(r.num, ' ', '')::DOUBLE "
           f"WHEN regexp_full_match(r.num, {_q(PAT_EU)}) THEN "
           f"replace(replace(replace(r.num, ' ', ''), '.', ''), ',', '.')::DOUBLE END)")
    scaled = f"(CASE r.unit WHEN '万' THEN {num} * 10000.0 WHEN '亿' THEN {num} * 100000000.0 ELSE {num} END)"
    body = (f"CASE WHEN (r.lp = '') <> (r.rp = '') OR (r.s1 <> '' AND r.s2 <> '') "
            f"OR (r.lp <> '' AND (r.s1 <> '' OR r.s2 <> '')) THEN NULL "
            f"WHEN r.lp <> '' OR r.s1 = '-' OR r.s2 = '-' THEN -{scaled} ELSE {scaled} END")
    ex = _bind(x, PAT_AMOUNT, ["lp", "s1", "s2", "num", "unit", "rp"], body)
    return (f"(CASE WHEN {x} IS NULL THEN NULL WHEN regexp_full_match({x}, {_q(PAT_FAST_NUM)}) THEN {x}::DOUBLE "
            f"WHEN regexp_full_match({x}, {_q(PAT_AMOUNT)}) THEN {ex} END)")


def sql_number(x: str) -> str:
    return sql_amount(x)


def sql_int(x: str) -> str:
    """SQL twin of parse_int (BIGINT)."""
    return (f"list_transform([{sql_amount(x)}], lambda v: CASE WHEN v = floor(v) AND abs(v) < 4611686018427387904 "
            f"THEN v::BIGINT END)[1]")


# ---------------------------------------------------------------- categorical standardizers
def _fold(v: str) -> str:
    return re.sub(r"[\s_\-]+", " ", v.casefold()).strip()


def _lookup(table: dict[str, str], kind: str, *, keep_unknown: bool = False) -> Callable[[object], str | None]:
    folded = {_fold(k): val for k, val in table.items()}

    def parse(value: object) -> str | None:
        v = clean(value)
        if v is None:
            return None
        out = folded.get(_fold(v))
        if out is None:
            if keep_unknown:
                return v
            raise ParseFailure(kind, v)
        return out

    parse.__doc__ = f"Standardize a {kind} value."
    return parse


def _syn(groups: dict[str, list[str]]) -> dict[str, str]:
    return {s: canon for canon, syns in groups.items() for s in [canon, *syns]}


BOOL_SYNONYMS = _syn({"true": ["是", "真", "对", "y", "yes", "t", "1", "有"],
                      "false": ["否", "假", "错", "n", "no", "f", "0", "无"]})
GENDER_SYNONYMS = _syn({
    "male": ["男", "男性", "男士", "先生", "m", "man", "boy", "男生"],
    "female": ["女", "女性", "女士", "小姐", "f", "woman", "girl", "女生"],
    "unknown": ["未知", "保密", "不详", "其他", "other", "u", "n/a", "na", "-", "unspecified"],
})
STATUS_SYNONYMS = _syn({
    "paid": ["已支付", "已付款", "支付成功", "付款成功", "已完成", "完成", "交易成功", "交易完成", "已收货",
             "已发货", "待发货", "success", "succeeded", "completed", "complete", "done", "finished",
             "delivered", "shipped", "closed won"],
    "refunded": ["退款", "已退款", "退款成功", "退货", "已退货", "退货退款", "refund", "returned", "return"],
    "cancelled": ["取消", "已取消", "交易关闭", "已关闭", "关闭", "订单取消", "canceled", "cancel", "closed",
                  "void"],
})
PLATFORM_SYNONYMS = _syn({
    "APP": ["app", "安卓", "android", "ios", "iphone", "ipad", "客户端", "手机app", "移动端app"],
    "web": ["pc", "h5", "www", "网页", "官网", "wap", "m站", "mobile web", "desktop", "网站", "pc端", "浏览器"],
    "mini-program": ["小程序", "mini program", "miniprogram", "mini-program", "微信小程序", "wechat mini program",
                     "支付宝小程序", "mp"],
})
LEVEL_SYNONYMS = _syn({
    "regular": ["普通", "普通会员", "normal", "basic", "standard", "member", "注册会员", "普卡"],
    "silver": ["银卡", "银卡会员", "白银", "白银会员", "silver member"],
    "gold": ["金卡", "金卡会员", "黄金", "黄金会员", "gold member"],
    "platinum": ["白金", "白金卡", "白金会员", "铂金", "铂金会员", "platinum member"],
    "diamond": ["钻石", "钻石卡", "钻石会员", "黑卡", "diamond member"],
})

parse_bool_text = _lookup(BOOL_SYNONYMS, "boolean")
parse_gender = _lookup(GENDER_SYNONYMS, "gender")
parse_status = _lookup(STATUS_SYNONYMS, "order status")
parse_platform = _lookup(PLATFORM_SYNONYMS, "platform", keep_unknown=True)
_level_table = _lookup(LEVEL_SYNONYMS, "member level", keep_unknown=True)
_VIP = re.compile(r"^(?:vip|v|lv|level|l)\s*[\._\-]?\s*([0-9]{1,2})$|^([0-9]{1,2})级(?:会员)?$")


def parse_bool(value: object) -> bool | None:
    """是/否, 真/假, 对/错, Y/N, yes/no, true/false, 1/0."""
    s = parse_bool_text(value)
    return None if s is None else s == "true"


def parse_member_level(value: object) -> str | None:
    """Standardize a membership level: trim, case-fold, synonyms; VIP 3 / V3 / 3级 → vip3."""
    v = clean(value)
    if v is None:
        return None
    m = _VIP.match(v.casefold())
    if m:
        return "vip" + str(int(m.group(1) or m.group(2)))
    out = _level_table(v)
    return out if out in LEVEL_SYNONYMS.values() else _fold(v)


# ---------------------------------------------------------------- regions
PROVINCES: dict[str, list[str]] = {
    "北京": ["北京市"], "上海": ["上海市"], "天津": ["天津市"], "重庆": ["重庆市"],
    "河北": ["河北省"], "山西": ["山西省"], "辽宁": ["辽宁省"], "吉林": ["吉林省"], "黑龙江": ["黑龙江省"],
    "江苏": ["江苏省"], "浙江": ["浙江省"], "安徽": ["安徽省"], "福建": ["福建省"], "江西": ["江西省"],
    "山东": ["山东省"], "河南": ["河南省"], "湖北": ["湖北省"], "湖南": ["湖南省"], "广东": ["广东省"],
    "海南": ["海南省"], "四川": ["四川省"], "贵州": ["贵州省"], "云南": ["云南省"], "陕西": ["陕西省"],
    "甘肃": ["甘肃省"], "青海": ["青海省"], "台湾": ["台湾省"],
    "内蒙古": ["内蒙古自治区"], "广西": ["广西壮族自治区", "广西自治区"], "西藏": ["西藏自治区"],
    "宁夏": ["宁夏回族自治区", "宁夏自治区"], "新疆": ["新疆维吾尔自治区", "新疆自治区"],
    "香港": ["香港特别行政区"], "澳门": ["澳门特别行政区"],
}
MUNICIPALITIES = ("北京", "上海", "天津", "重庆")
_CITIES_BY_PROVINCE = {
    "河北": "石家庄 唐山 保定 邯郸 廊坊 秦皇岛 沧州 邢台 张家口",
    "山西": "太原 大同 临汾", "辽宁": "沈阳 大连 鞍山 抚顺", "吉林": "长春 吉林", "黑龙江": "哈尔滨 大庆 齐齐哈尔",
    "江苏": "南京 苏州 无锡 常州 南通 徐州 扬州 盐城 泰州 镇江 连云港 淮安",
    "浙江": "杭州 宁波 温州 绍兴 嘉兴 金华 台州 湖州 义乌",
    "安徽": "合肥 芜湖 蚌埠 阜阳", "福建": "福州 厦门 泉州 漳州 莆田", "江西": "南昌 赣州 九江",
    "山东": "济南 青岛 烟台 潍坊 临沂 淄博 济宁 威海 泰安",
    "河南": "郑州 洛阳 南阳 新乡 开封", "湖北": "武汉 宜昌 襄阳 荆州", "湖南": "长沙 株洲 湘潭 岳阳 衡阳 常德",
    "广东": "广州 深圳 东莞 佛山 珠海 中山 惠州 汕头 江门 湛江 肇庆 茂名 揭阳 清远 韶关",
    "海南": "海口 三亚", "四川": "成都 绵阳 宜宾 南充 德阳 泸州", "贵州": "贵阳 遵义", "云南": "昆明 大理 曲靖",
    "陕西": "西安 咸阳 宝鸡", "甘肃": "兰州", "青海": "西宁", "内蒙古": "呼和浩特 包头 鄂尔多斯",
    "广西": "南宁 柳州 桂林", "西藏": "拉萨", "宁夏": "银川", "新疆": "乌鲁木齐 克拉玛依",
}
CITY_TO_PROVINCE: dict[str, str] = {c: p for p, cs in _CITIES_BY_PROVINCE.items() for c in cs.split()}
CITY_TO_PROVINCE.update({m: m for m in MUNICIPALITIES})
_PROV_VARIANTS = sorted(((v, p) for p, vs in PROVINCES.items() for v in [*vs, p]), key=lambda x: -len(x[0]))
_CITY_NAMES = sorted(CITY_TO_PROVINCE, key=len, reverse=True)
_CITY_SUFFIX = re.compile(r"^(.{2,8}?)(?:市|自治州|地区|盟)")


def parse_region(value: object) -> tuple[str | None, str | None]:
    """"广东省深圳市南山区…" / "广东深圳" / "深圳市" → (广东, 深圳); ParseFailure when neither is recognized."""
    v = clean(value)
    if v is None:
        return (None, None)
    v = v.replace(" ", "")
    province = None
    rest = v
    for variant, p in _PROV_VARIANTS:
        if v.startswith(variant):
            province, rest = p, v[len(variant):]
            break
    if province in MUNICIPALITIES:
        return (province, province)
    city = None
    for c in _CITY_NAMES:
        if rest.startswith(c) and (province is None or CITY_TO_PROVINCE[c] == province):
            city = c
            break
    if city is None and province is not None and (m := _CITY_SUFFIX.match(rest)):
        city = m.group(1)
    if city is not None and province is None:
        province = CITY_TO_PROVINCE.get(city)
    if province is None:
        raise ParseFailure("region", v)
    return (province, city)


def parse_province(value: object) -> str | None:
    """广东省 → 广东, 广西壮族自治区 → 广西; unknown names are a failure."""
    v = clean(value)
    if v is None:
        return None
    for variant, p in _PROV_VARIANTS:
        if v == variant:
            return p
    raise ParseFailure("province", v)


def parse_city(value: object) -> str | None:
    """深圳市 → 深圳; a city not in the table is kept with its 市 suffix stripped."""
    v = clean(value)
    if v is None:
        return None
    for suffix in ("市", "自治州", "地区", "盟"):
        if v.endswith(suffix) and len(v) > len(suffix) + 1:
            return v[: -len(suffix)]
    return v


# ---------------------------------------------------------------- vectorized maps over Arrow arrays
def vec_map(arr: pa.Array | pa.ChunkedArray, fn: Callable[[object], object],
            out_type: pa.DataType = pa.string()) -> tuple[pa.Array, pa.Array]:
    """Apply a scalar parser once per distinct value; returns (values, failed mask) for the whole array."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    enc = pc.dictionary_encode(arr.cast(pa.string()))
    vals: list[object] = []
    failed: list[bool] = []
    for d in enc.dictionary.to_pylist():
        try:
            vals.append(fn(d))
            failed.append(False)
        except ParseFailure:
            vals.append(None)
            failed.append(True)
    idx = enc.indices
    out = pc.take(pa.array(vals, type=out_type), idx)
    bad = pc.fill_null(pc.take(pa.array(failed, type=pa.bool_()), idx), False)
    return out, bad


_duck = None


def _duckdb():
    global _duck
    if _duck is None:
        import duckdb  # noqa: PLC0415

        _duck = duckdb.connect()
    return _duck


def vec_sql(arr: pa.Array | list[object], sql_fn: Callable[[str], str]) -> pa.Array:
    """Run a SQL parser (sql_timestamp, sql_amount …) over an Arrow string array in in-memory DuckDB."""
    a = pa.array([None if v is None else str(v) for v in arr], pa.string()) if isinstance(arr, list) else arr
    tbl = pa.table({"v": a.cast(pa.string())})
    con = _duckdb().cursor()
    con.register("_cl_vec", tbl)
    try:
        res = con.execute(f"SELECT {sql_fn(sql_clean('v'))} AS out FROM _cl_vec").fetch_arrow_table()
    finally:
        con.unregister("_cl_vec")
    return res.column("out").combine_chunks()


def vec_timestamp(arr: pa.Array | list[object], tz: str = DEFAULT_TZ) -> pa.Array:
    return vec_sql(arr, lambda x: sql_timestamp(x, tz))


def vec_date(arr: pa.Array | list[object], tz: str = DEFAULT_TZ) -> pa.Array:
    return vec_sql(arr, lambda x: sql_date(x, tz))


def vec_amount(arr: pa.Array | list[object]) -> pa.Array:
    return vec_sql(arr, sql_amount)


def vec_int(arr: pa.Array | list[object]) -> pa.Array:
    return vec_sql(arr, sql_int)


def vec_bool(arr: pa.Array | list[object]) -> tuple[pa.Array, pa.Array]:
    a = pa.array([None if v is None else str(v) for v in arr], pa.string()) if isinstance(arr, list) else arr
    return vec_map(a, parse_bool, pa.bool_())
