"""Recognizers for personal data: strict validators for single values and column-level detection.

Validators check structure *and* redundancy (ID check digits, Luhn, real dates) so that order ids,
landlines and typo'd numbers are not mistaken for personal data.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Literal

from custlens.model.aliases import match_column, normalize_header

KINDS = ("phone", "id_number", "bank_card", "email", "ip", "intl_phone", "name", "address")

# ----------------------------------------------------------------------------------------------
# Region data (shared with transforms.mask for addresses)
# ----------------------------------------------------------------------------------------------

PROVINCES: tuple[str, ...] = (
    "北京", "天津", "上海", "重庆", "河北", "山西", "辽宁", "吉林", "黑龙江", "江苏", "浙江", "安徽", "福建",
    "江西", "山东", "河南", "湖北", "湖南", "广东", "海南", "四川", "贵州", "云南", "陕西", "甘肃", "青海",
    "台湾", "内蒙古", "广西", "西藏", "宁夏", "新疆", "香港", "澳门",
)
MUNICIPALITIES = frozenset({"北京", "天津", "上海", "重庆", "香港", "澳门"})

# Major prefecture-level cities → province (standardized short names, as in customers.city).
CITIES: dict[str, str] = {
    # 广东
    "广州": "广东", "深圳": "广东", "东莞": "广东", "佛山": "广东", "珠海": "广东", "中山": "广东", "惠州": "广东",
    "汕头": "广东", "江门": "广东", "湛江": "广东", "肇庆": "广东", "茂名": "广东", "揭阳": "广东", "清远": "广东",
    # 江苏
    "南京": "江苏", "苏州": "江苏", "无锡": "江苏", "常州": "江苏", "南通": "江苏", "徐州": "江苏", "扬州": "江苏",
    "盐城": "江苏", "泰州": "江苏", "镇江": "江苏", "连云港": "江苏", "淮安": "江苏",
    # 浙江
    "杭州": "浙江", "宁波": "浙江", "温州": "浙江", "绍兴": "浙江", "嘉兴": "浙江", "金华": "浙江", "台州": "浙江",
    "湖州": "浙江",
    # 山东
    "济南": "山东", "青岛": "山东", "烟台": "山东", "潍坊": "山东", "临沂": "山东", "淄博": "山东", "济宁": "山东",
    "威海": "山东",
    # 其他省会与重点城市
    "石家庄": "河北", "唐山": "河北", "保定": "河北", "廊坊": "河北", "邯郸": "河北",
    "太原": "山西", "大同": "山西",
    "沈阳": "辽宁", "大连": "辽宁", "鞍山": "辽宁",
    "长春": "吉林",
    "哈尔滨": "黑龙江", "大庆": "黑龙江",
    "合肥": "安徽", "芜湖": "安徽", "蚌埠": "安徽", "黄山": "安徽",
    "福州": "福建", "厦门": "福建", "泉州": "福建", "漳州": "福建",
    "南昌": "江西", "赣州": "江西", "九江": "江西",
    "郑州": "河南", "洛阳": "河南", "南阳": "河南", "新乡": "河南",
    "武汉": "湖北", "宜昌": "湖北", "襄阳": "湖北",
    "长沙": "湖南", "株洲": "湖南", "岳阳": "湖南", "衡阳": "湖南",
    "海口": "海南", "三亚": "海南",
    "成都": "四川", "绵阳": "四川", "宜宾": "四川", "南充": "四川",
    "贵阳": "贵州", "遵义": "贵州",
    "昆明": "云南", "大理": "云南", "丽江": "云南",
    "西安": "陕西", "咸阳": "陕西", "宝鸡": "陕西",
    "兰州": "甘肃", "天水": "甘肃",
    "西宁": "青海",
    "呼和浩特": "内蒙古", "包头": "内蒙古", "鄂尔多斯": "内蒙古",
    "南宁": "广西", "柳州": "广西", "桂林": "广西",
    "拉萨": "西藏",
    "银川": "宁夏",
    "乌鲁木齐": "新疆",
    "台北": "台湾", "高雄": "台湾",
}
for _m in MUNICIPALITIES:
    CITIES.setdefault(_m, _m)

_PROVINCE_SUFFIX = r"(?:省|市|特别行政区|壮族自治区|回族自治区|维吾尔自治区|自治区)?"
_PROVINCE_RE = re.compile("(" + "|".join(sorted(PROVINCES, key=len, reverse=True)) + ")" + _PROVINCE_SUFFIX)
# A city name followed by 路/街/大道 is a street (中山路, 南京东路), not the city.
_CITY_RE = re.compile("(" + "|".join(sorted(CITIES, key=len, reverse=True)) + ")(?:市|(?![东南西北中]?(?:路|街|大?道|巷|弄)))")
_ANY_CITY_RE = re.compile(r"([\u4e00-\u9fff]{2,4}?)(?:市|自治州|地区|盟)")

_ADDRESS_DETAIL = re.compile(
    r"路|街|道|巷|弄|胡同|号|室|村|小区|栋|幢|单元|楼|大厦|花园|公寓|苑|镇|乡|区.{1,12}(?:号|室|栋)"
)


def find_region(text: str) -> tuple[str | None, str | None]:
    """(province, city) named in a text, standardized (广东省深圳市… → 广东, 深圳); None where absent."""
    s = unicodedata.normalize("NFKC", str(text))
    province = city = None
    m = _PROVINCE_RE.search(s)
    rest = s
    if m and m.start() <= 2:
        province = m.group(1)
        rest = s[m.end():]
    if province in MUNICIPALITIES:
        return province, province
    mc = _CITY_RE.search(rest if province else s)
    if mc and (province is None or CITIES[mc.group(1)] == province):
        city = mc.group(1)
        province = province or CITIES[city]
    elif province:
        ma = _ANY_CITY_RE.match(rest)
        if ma:
            city = ma.group(1)
    return province, city


# ----------------------------------------------------------------------------------------------
# Single-value validators
# ----------------------------------------------------------------------------------------------

_SEP = re.compile(r"[\s\-\u2010-\u2015().]")
_CN_MOBILE = re.compile(r"(?:\+86|0086|86)?(1[3-9]\d{9})")


def _clean(s: object) -> str:
    if s is None:
        return ""
    return unicodedata.normalize("NFKC", str(s)).strip()


def cn_mobile_digits(s: object) -> str | None:
    """The 11 national digits of a CN mobile number (prefix and separators removed), or None."""
    v = _SEP.sub("", _clean(s))
    m = _CN_MOBILE.fullmatch(v)
    return m.group(1) if m else None


def is_cn_mobile(s: object) -> bool:
    """11-digit mainland mobile 1[3-9]x…, tolerating a +86/0086 prefix, spaces and dashes."""
    return cn_mobile_digits(s) is not None


# GB/T 2260 province-level codes (first two digits of a resident ID); 81-83 are HK/Macau/Taiwan permits.
ID_REGION_PREFIXES = frozenset({
    "11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37", "41", "42",
    "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64", "65", "71", "81", "82", "83",
})
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def id_check_digit(first17: str) -> str:
    """GB 11643-1999 (ISO 7064 MOD 11-2) check character for the first 17 digits."""
    total = sum(int(c) * w for c, w in zip(first17, _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11]


def _valid_birth(y: int, m: int, d: int) -> bool:
    try:
        born = date(y, m, d)
    except ValueError:
        return False
    return date(1900, 1, 1) <= born <= date.today()


def _id_structure(v: str) -> bool:
    """Region prefix and birth date of an 18-character ID are plausible (check digit not examined)."""
    return (len(v) == 18 and v[:17].isdigit() and v[:2] in ID_REGION_PREFIXES
            and _valid_birth(int(v[6:10]), int(v[10:12]), int(v[12:14])))


def is_cn_id_number(s: object) -> bool:
    """Mainland resident ID: 18 chars with valid check digit, birth date and region; or legacy 15 digits."""
    v = _clean(s).replace(" ", "").upper()
    if len(v) == 18:
        return _id_structure(v) and v[17] in "0123456789X" and id_check_digit(v[:17]) == v[17]
    if len(v) == 15 and v.isdigit() and v[:2] in ID_REGION_PREFIXES:
        return _valid_birth(1900 + int(v[6:8]), int(v[8:10]), int(v[10:12]))
    return False


def id_shaped(s: object) -> bool:
    """An 18-char value shaped like a resident ID (maybe with a wrong check digit): never a card."""
    v = _clean(s).upper()
    return _id_structure(v) and v[17] in "0123456789X"


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, c in enumerate(reversed(digits)):
        n = ord(c) - 48
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def _card_prefix_ok(d: str) -> bool:
    # Visa 4, Mastercard 51-55 / 2221-2720, UnionPay 62/81, Discover 60/64/65, JCB 35, Maestro 50/56-69, CN debit 9
    if d[0] in "4569":
        return True
    if d[:2] in {"35", "81"}:
        return True
    return 2221 <= int(d[:4]) <= 2720


def card_digits(s: object) -> str | None:
    """Digits of a card number written with optional spaces/dashes, or None if not card-shaped."""
    v = _clean(s)
    if not re.fullmatch(r"\d[\d \-]{14,24}\d", v):
        return None
    d = re.sub(r"[ \-]", "", v)
    return d if 16 <= len(d) <= 19 else None


def is_bank_card(s: object) -> bool:
    """16–19 digit payment card number passing Luhn with an issuer prefix (UnionPay 62 included)."""
    d = card_digits(s)
    return bool(d) and _card_prefix_ok(d) and not id_shaped(d) and luhn_ok(d)


_EMAIL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}"
)


def is_email(s: object) -> bool:
    """An address local@domain.tld (no spaces, dotted domain with a letter TLD)."""
    v = _clean(s)
    return len(v) <= 254 and bool(_EMAIL.fullmatch(v))


def is_ipv4(s: object) -> bool:
    v = _clean(s)
    if not re.fullmatch(r"\d{1,3}(?:\.\d{1,3}){3}", v):
        return False
    try:
        ipaddress.IPv4Address(v)
    except ValueError:
        return False
    return True


def is_ipv6(s: object) -> bool:
    v = _clean(s)
    if ":" not in v or not re.fullmatch(r"[0-9A-Fa-f:.]{2,45}", v):
        return False
    try:
        ipaddress.IPv6Address(v)
    except ValueError:
        return False
    return True


def is_ip(s: object) -> bool:
    return is_ipv4(s) or is_ipv6(s)


# E.164 country codes of one (1, 7) or two digits; every other code has three.
_CC2 = frozenset({
    "20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45", "46", "47", "48", "49",
    "51", "52", "53", "54", "55", "56", "57", "58", "60", "61", "62", "63", "64", "65", "66", "81", "82", "84",
    "86", "90", "91", "92", "93", "94", "95", "98",
})


def country_code(digits: str) -> str:
    """The E.164 country calling code at the start of `digits` (after the +)."""
    if digits[:1] in {"1", "7"}:
        return digits[:1]
    if digits[:2] in _CC2:
        return digits[:2]
    return digits[:3]


def intl_phone_digits(s: object) -> str | None:
    """Digits after the + of an international number (+CC then 7–14 digits), or None."""
    v = _clean(s)
    if not re.fullmatch(r"\+[1-9][\d \-().]{6,22}\d", v):
        return None
    d = re.sub(r"\D", "", v[1:])
    cc = country_code(d)
    if not 7 <= len(d) - len(cc) <= 14 or len(d) > 15:
        return None
    return d


def is_intl_phone(s: object) -> bool:
    """E.164-style +CC number with 7–14 national digits that is not a CN mobile."""
    return intl_phone_digits(s) is not None and not is_cn_mobile(s)


COMPOUND_SURNAMES = frozenset({
    "欧阳", "司马", "诸葛", "上官", "司徒", "东方", "皇甫", "尉迟", "公孙", "慕容", "令狐", "夏侯", "长孙", "宇文",
    "轩辕", "端木", "独孤", "南宫", "西门", "百里", "呼延", "澹台", "万俟", "闻人", "赫连", "申屠", "钟离", "太史",
    "司空", "仲孙", "单于", "濮阳", "淳于", "公冶", "宗政", "鲜于", "东郭", "第五",
})
SURNAMES = frozenset(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
    "姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
    "常温康施文牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿关兰焦俞左柳甘祝包宁尚符舒阮柯纪梅童凌毕单季"
    "裴霍涂成苗谷盛曲翁冉骆蓝路游辛靳管柴蒙鲍华喻祁蒲房滕屈饶解牟艾尤阳时穆农司卓古吉缪简车项连芦麦褚娄窦"
    "戚岑景党宫费卜冷晏席卫米柏宗瞿桂全佟应臧闵苟邬边卞姬师和仇栾隋商刁沙荣巫寇桑郎甄丛仲虞敖巩明佘池查麻"
    "苑迟邝官封谈匡鞠惠荆乐冀郁胥南班储原栗燕楚鄢劳谌奚皮粟冼蔺楼盘满闻位厉伊仝区郜海阚花权强帅屠豆朴盖练"
    "廉禹井祖漆巴丰支卿国狄平计索宣晋相初门云容敬来扈晁芮都普阙浦戈伏鹿薄邸雍辜羊阿乌母裘亓修邰赫杭况那宿"
    "鲜印逯隆茹诸战慕危玉银亢嵇公哈湛宾戎勾茅利於呼居揭干但尉冶斯元束檀衣信展阴昝智幸奉植衡富尧闭由"
)
_CJK = re.compile(r"[\u4e00-\u9fff]+")
# Characters common in product, place and organisation names but rare in given names.
_NOT_IN_NAMES = frozenset(
    "杯油奶酒醋机器包箱盒装袋券卡片粉膏霜液茶米面鞋衣裤帽笔灯车州市省县区路街站店场馆院司部厂号款型版色码"
    "件套瓶罐桶袜巾被枕垫锅碗筷勺盘壶刀剪锁架柜桌椅床沙发屏线充电池耳麦键鼠标本册纸膜霜乳露精华素宝贝"
    "品牌会员优惠促销折扣活动年庆节日周月季度线上下单付款退货换订单评价客服物流快递仓库门市城镇乡村楼栋室"
    "饼干糕肉鱼虾蟹鸡鸭蛋菜果汁糖盐酱咖啡可乐啤饮料水泥木材钢铁塑胶皮革棉麻丝绒网联"
)
# Two-character business words that happen to start with a surname (member levels, regions, brands…).
_STOP_WORDS = frozenset({
    "白银", "黄金", "白金", "铂金", "普通", "高级", "安卓", "苹果", "华为", "银联", "官网", "门店", "华东", "华南",
    "华北", "华中", "西北", "西南", "江南", "江北", "平安", "和平", "中国", "国内", "国外", "海外", "明天", "今天",
    "全部", "其他", "其它", "常规", "常用", "方便", "方正", "石油", "金融", "金额", "时间", "时长", "文本", "文字",
    "毛利", "毛重", "成本", "成交", "成功", "单价", "单品", "单位", "包邮", "关注", "关闭", "计划", "计费", "支付",
    "安全", "万元", "千元", "向上", "向下", "高端", "高价", "低价", "任意", "任务", "任何", "邮箱", "电话",
})


def is_cn_name(s: object) -> bool:
    """2–4 CJK characters starting with a common surname (compound surnames 欧阳/司马/诸葛… included)."""
    v = _clean(s).replace(" ", "").replace("·", "")
    if not _CJK.fullmatch(v) or not 2 <= len(v) <= 4:
        return False
    if v[:2] in COMPOUND_SURNAMES:
        given = v[2:]
        if not 1 <= len(given) <= 2:
            return False
    elif v[0] in SURNAMES:
        given = v[1:]
        if len(given) > 2 and not (v[1] in SURNAMES and len(v) == 4):  # 4 chars only as 复姓-style 张王小明
            return False
    else:
        return False
    if v in _STOP_WORDS or any(c in _NOT_IN_NAMES for c in given):
        return False
    return v not in CITIES and v not in PROVINCES and v.rstrip("市省") not in CITIES


def is_cn_address(s: object) -> bool:
    """A detailed mainland address: names a province or city and has street/building/unit parts."""
    v = _clean(s)
    if not 6 <= len(v) <= 120 or not _CJK.search(v):
        return False
    province, city = find_region(v)
    if not (province or city):
        return False
    return bool(_ADDRESS_DETAIL.search(v))


def detect_value(s: object) -> str | None:
    """The kind of personal data one value is, or None; strict (typos and look-alikes give None)."""
    v = _clean(s)
    if not v or len(v) > 200:
        return None
    if v[0].isdigit() or v[0] == "+":
        if is_cn_mobile(v):
            return "phone"
        if is_cn_id_number(v):
            return "id_number"
        if is_bank_card(v):
            return "bank_card"
        if is_intl_phone(v):
            return "intl_phone"
        if is_ipv4(v):
            return "ip"
    if "@" in v:
        return "email" if is_email(v) else None
    if ":" in v and is_ipv6(v):
        return "ip"
    if _CJK.search(v):
        if is_cn_name(v):
            return "name"
        if is_cn_address(v):
            return "address"
    return None


# ----------------------------------------------------------------------------------------------
# Column detection
# ----------------------------------------------------------------------------------------------

PII_COLUMNS = ("phone", "email", "id_number", "name", "address", "ip")
_BANK_HEADERS = frozenset(normalize_header(h) for h in (
    "银行卡", "银行卡号", "卡号", "银行账号", "银行账户", "借记卡号", "信用卡号", "bank card", "bank_card", "bankcard",
    "bank card no", "bank_card_no", "card_no", "card number", "card_number", "bank account", "bank_account_no",
    "credit card", "credit_card", "debit card",
))
_EXTRA_HEADERS: dict[str, str] = {
    **{h: "bank_card" for h in _BANK_HEADERS},
    **{normalize_header(h): "intl_phone" for h in ("international phone", "intl_phone", "国际电话", "境外手机号")},
    **{normalize_header(h): "name" for h in ("收件人", "收货人", "联系人姓名", "真实姓名", "客户名称", "持卡人",
                                              "real_name", "first_name", "last_name", "contact_name")},
    **{normalize_header(h): "address" for h in ("收件地址", "通讯地址", "户籍地址", "home address", "shipping address")},
    **{normalize_header(h): "ip" for h in ("ipv4", "ipv6", "remote_addr", "客户端ip", "登录ip")},
}
_GENERIC_NAME_HEADERS = frozenset(normalize_header(h) for h in ("name", "username", "user_name", "名字"))
_NAME_HINTS = ("姓名", "联系人", "收件人", "收货人", "持卡人", "客户", "会员", "用户", "name", "person", "contact")
_NOT_NAME_HINTS = ("商品", "产品", "品名", "名称", "product", "item", "goods", "sku", "店", "shop", "store", "city",
                   "城市", "公司", "company", "活动", "campaign", "类", "category", "file", "文件", "渠道", "channel")
_ADDRESS_HINTS = ("地址", "住址", "addr", "location", "收货", "位置", "住所")
VERY_HIGH_SHARE = 0.9


@dataclass(frozen=True)
class PiiDetection:
    """A column found to hold personal data: its kind, how it was found, and the matching share."""

    kind: str
    by: Literal["name", "content", "both"]
    share: float
    header: str

    def to_dict(self) -> dict[str, object]:
        return {"header": self.header, "kind": self.kind, "by": self.by, "share": round(self.share, 4)}


def kind_by_header(header: str) -> str | None:
    """The PII kind a column header names (手机号 → phone, 银行卡号 → bank_card), or None."""
    canon = match_column(header, PII_COLUMNS)
    if canon in PII_COLUMNS:
        return canon
    return _EXTRA_HEADERS.get(normalize_header(header))


def _hints(header: str, good: tuple[str, ...], bad: tuple[str, ...] = ()) -> bool:
    h = normalize_header(header)
    return any(g in h for g in good) and not any(b in h for b in bad)


def is_missing(v: object) -> bool:
    """None, NaN, pandas NA/NaT: an absent value rather than text."""
    return v is None or (isinstance(v, float) and v != v) or type(v).__name__ in ("NAType", "NaTType")


def _content_shares(values: Sequence[object]) -> tuple[Counter[str], int]:
    counts: Counter[str] = Counter()
    n = 0
    for v in values:
        if is_missing(v):
            continue
        s = str(v).strip()
        if not s:
            continue
        n += 1
        k = detect_value(s)
        if k:
            counts[k] += 1
    return counts, n


def detect_column(header: str, values: Sequence[str | None], min_share: float = 0.6) -> PiiDetection | None:
    """Decide whether a column holds personal data, from its header and/or a sample of its values."""
    header = str(header)
    counts, n = _content_shares(values)
    share = {k: c / n for k, c in counts.items()} if n else {}
    by_header = kind_by_header(header)

    if by_header is not None:
        kshare = share.get(by_header, 0.0)
        if by_header == "phone":
            kshare = share.get("phone", 0.0) + share.get("intl_phone", 0.0)
        elif by_header == "intl_phone":
            kshare = share.get("intl_phone", 0.0) + share.get("phone", 0.0)
        # A bare "name" header over values that are clearly not personal names (product names…) is not PII.
        if (by_header == "name" and normalize_header(header) in _GENERIC_NAME_HEADERS and n >= 5
                and kshare < 0.3):
            return None
        return PiiDetection(by_header, "both" if n and kshare >= min_share else "name", kshare, header)

    if not counts:
        return None
    kind, c = counts.most_common(1)[0]
    kshare = c / n
    if kind in ("phone", "intl_phone"):
        kshare = (counts["phone"] + counts["intl_phone"]) / n
    if kshare < min_share:
        return None
    if kind == "name" and not (_hints(header, _NAME_HINTS, _NOT_NAME_HINTS) or kshare >= VERY_HIGH_SHARE):
        return None
    if kind == "address" and not (_hints(header, _ADDRESS_HINTS) or kshare >= VERY_HIGH_SHARE):
        return None
    return PiiDetection(kind, "content", kshare, header)
