"""Synthetic multi-source exports of a Chinese retailer (2023–2024) with planted, measured truths.

Everything is drawn from one numpy Generator(seed) with vectorized steps; events are written in
customer chunks so memory stays bounded at millions of customers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from custlens.demo import names as V
from custlens.demo import truth as T
from custlens.errors import InputError

START = np.datetime64("2023-01-01", "D")
AS_OF = "2024-12-31"
NDAYS = 731  # 2023-01-01 .. 2024-12-31
EPOCH0 = int(START.astype("datetime64[s]").astype(np.int64))
DAY = 86400
# "Future" dirt must be impossible whenever the data is loaded, so it lies far beyond any real clock
# (the data itself is dated 2023–2024, and a load in 2026 must still see these as future).
FUTURE0 = int(np.datetime64("2099-01-01", "s").astype(np.int64))
XLSX_MAX_ROWS = 1_000_000
EVENT_CHUNK = 50_000  # customers per events chunk

# latent customer types: share, mean gap between orders (days of "shopping time"), churn mean after the
# 90-day grace (days), probability of never buying, member-level weights (普通, 银卡, 金卡, 钻石),
# discount rate range, ticket probability per order.
SEGMENTS: dict[str, dict[str, Any]] = {
    "high_value_loyal": dict(share=0.10, gap=40, churn=3000, never=0.0, level=[0.05, 0.15, 0.40, 0.40],
                             disc=(0.00, 0.08), lines=0.9, ticket=0.07, price=1.5),
    "regular": dict(share=0.35, gap=110, churn=1100, never=0.05, level=[0.45, 0.35, 0.15, 0.05],
                    disc=(0.00, 0.10), lines=0.5, ticket=0.09, price=1.0),
    "bargain_hunter": dict(share=0.15, gap=95, churn=800, never=0.05, level=[0.55, 0.30, 0.12, 0.03],
                           disc=(0.12, 0.35), lines=0.6, ticket=0.12, price=0.7),
    "new": dict(share=0.15, gap=60, churn=1100, never=0.30, level=[0.85, 0.12, 0.03, 0.0],
                disc=(0.00, 0.15), lines=0.4, ticket=0.12, price=0.9),
    "dormant": dict(share=0.25, gap=120, churn=90, never=0.25, level=[0.70, 0.22, 0.07, 0.01],
                    disc=(0.00, 0.10), lines=0.3, ticket=0.12, price=0.9),
}
SEG_NAMES = list(SEGMENTS)
GAP_SHAPE = 2.5  # gamma shape of the gaps: buyers replenish at fairly regular intervals
FEW_EARLY_MULT = 2.0  # churn hazard multiplier for ≤1 order in the 90 days after the first order
LOW_SAT_CHURN_P = 0.9  # probability that a ticket rated ≤2 makes the customer leave within 30 days

MONTH_MULT = {1: 0.95, 2: 0.75, 3: 0.95, 4: 0.95, 5: 1.0, 6: 1.35, 7: 1.0, 8: 1.0, 9: 1.0, 10: 1.05, 11: 1.9,
              12: 1.25}
TREND_PER_YEAR = 0.18
HOUR_W = np.array([1.2, 0.7, 0.4, 0.3, 0.3, 0.4, 0.8, 1.5, 2.5, 3.5, 4, 4.2, 4.5, 4, 3.8, 3.8, 4, 4.2, 4.5, 5, 5.5,
                   6, 5, 3], dtype=float)
HOUR_W /= HOUR_W.sum()

# funnel step probabilities per platform: view→add_to_cart, add_to_cart→checkout, checkout→order
FUNNEL = {"APP": (0.55, 0.75, 0.90), "web": (0.45, 0.65, 0.88), "mini-program": (0.55, 0.35, 0.88)}
CHANNEL_MIX = [0.20, 0.15, 0.12, 0.08, 0.10, 0.35]  # order channel when not the acquisition channel
CHANNEL_ROI = {"短信": 6.0, "搜索广告": 4.0, "社交媒体": 2.8, "信息流": 1.8, "直播": 1.1}
CAMPAIGNS = {"搜索广告": [("品牌词", "Brand keywords", 0.6), ("通用词", "Generic keywords", 0.4)],
             "信息流": [("抖音信息流", "Douyin feed", 0.55), ("腾讯广点通", "Tencent GDT", 0.45)],
             "社交媒体": [("小红书种草", "Xiaohongshu seeding", 0.7), ("微博话题", "Weibo topic", 0.3)],
             "短信": [("会员召回", "Member win-back", 1.0)],
             "直播": [("达人直播", "Influencer live", 0.65), ("品牌自播", "Brand live", 0.35)],
             "自然流量": [("-", "-", 1.0)]}
DIP = dict(month="2024-08", region="华南", platform="mini-program", loss_p=0.95,
           cause="mini-program payment outage in South China")
BUNDLES = [  # (category, stem index) pairs/triples planted as bought-together, with per-order probability
    ([(0, 2), (0, 4)], 0.030),  # 手机壳 + 数据线
    ([(5, 0), (5, 5)], 0.025),  # 纸尿裤 + 湿巾
    ([(9, 0), (9, 2)], 0.020),  # 猫粮 + 猫砂
    ([(1, 5), (4, 1)], 0.015),  # 咖啡机 + 咖啡豆
    ([(3, 0), (3, 4), (3, 3)], 0.012),  # 面霜 + 面膜 + 防晒霜
]

# dirt rates
DIRT = dict(orders_dup=0.01, events_dup=0.005, customers_keydup=0.02, gender_missing=0.02,
            member_level_missing=0.08, email_missing=0.30, phone_format=0.03, orders_outlier50x=0.0005,
            orders_negative_paid=0.0003, orders_future=0.0003, orders_malformed_date=0.002,
            orders_date_slash=0.10, orders_date_compact=0.05, orders_yuan=0.08, events_duration_outlier=2e-5,
            events_future=1e-5, events_negative_duration=1e-5, register_date_slash=0.05,
            register_date_compact=0.03, spend_excel_serial=0.03, spend_text_date=0.02)
MALFORMED = ["2024-13-45", "昨天", "2023-02-30 10:00:00", "N/A", "0000-00-00", "2024/00/12"]

ProgressFn = Callable[[str, float], None]


@dataclass
class GenerateResult:
    """What generate() wrote: folder, manifest entries, truth dict and row counts per file."""

    out: Path
    manifest: list[dict[str, Any]]
    truth: dict[str, Any]
    rows: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"out": str(self.out), "rows": self.rows, "files": [m["file"] for m in self.manifest],
                "truth_keys": sorted(self.truth)}


# ---------------------------------------------------------------- helpers
def _count(rate: float, n: int) -> int:
    return int(round(rate * n))


def _pick(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """k distinct indices out of n (sorted)."""
    k = min(k, n)
    return np.sort(rng.choice(n, size=k, replace=False)) if k else np.zeros(0, dtype=np.int64)


def _ids(prefix: str, nums: np.ndarray, width: int) -> pa.Array:
    s = pc.utf8_lpad(pc.cast(pa.array(np.asarray(nums, dtype=np.int64)), pa.string()), width, "0")
    return pc.binary_join_element_wise(pa.scalar(prefix), s, "")


def _fmt_ts(ts: np.ndarray) -> np.ndarray:
    """'YYYY-MM-DD HH:MM:SS' strings (object array) from epoch seconds."""
    arr = pc.strftime(pa.array(np.asarray(ts, dtype=np.int64), pa.timestamp("s")), format="%Y-%m-%d %H:%M:%S")
    return arr.to_numpy(zero_copy_only=False).astype(object)


def _ymdhm(ts: np.ndarray) -> tuple[np.ndarray, ...]:
    dt = np.asarray(ts, dtype=np.int64).astype("datetime64[s]")
    y = dt.astype("datetime64[Y]").astype(int) + 1970
    m = dt.astype("datetime64[M]").astype(int) % 12 + 1
    d = (dt.astype("datetime64[D]") - dt.astype("datetime64[M]")).astype(int) + 1
    sod = (dt - dt.astype("datetime64[D]")).astype(int)
    return y, m, d, sod // 3600, (sod // 60) % 60, sod % 60


def _date_variants(ts: np.ndarray, style: str) -> list[str]:
    y, m, d, hh, mm, ss = _ymdhm(ts)
    if style == "slash":
        return [f"{a}/{b}/{c} {e:02d}:{f:02d}" for a, b, c, e, f in zip(y, m, d, hh, mm, strict=True)]
    return [f"{a}{b:02d}{c:02d} {e:02d}{f:02d}{g:02d}" for a, b, c, e, f, g in zip(y, m, d, hh, mm, ss, strict=True)]


def _money(x: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(x, dtype=float), 2)


def _day_weights(power: float = 1.0) -> np.ndarray:
    """Daily shopping intensity: trend × month multiplier × weekday × promo-day spikes (mean 1)."""
    days = START + np.arange(NDAYS)
    month = days.astype("datetime64[M]").astype(int) % 12 + 1
    dom = (days - days.astype("datetime64[M]")).astype(int) + 1
    dow = (days.astype(np.int64) + 3) % 7  # 0 = Monday
    w = (1 + TREND_PER_YEAR * np.arange(NDAYS) / 365.0) * np.vectorize(MONTH_MULT.get)(month)
    w = w * np.where(dow >= 5, 1.1, 0.96)
    w = w * np.where((month == 11) & (dom >= 10) & (dom <= 11), 4.0, 1.0)
    w = w * np.where((month == 6) & (dom == 18), 3.0, 1.0) * np.where((month == 12) & (dom == 12), 2.0, 1.0)
    w = w**power
    return w / w.mean()


def _grouped_cumsum(values: np.ndarray, starts: np.ndarray, owner: np.ndarray) -> np.ndarray:
    cs = np.cumsum(values)
    return cs - (cs[starts] - values[starts])[owner]


# ---------------------------------------------------------------- customers
def _customers(rng: np.random.Generator, n: int, lang: str, part: tuple[int, int] = (0, 1), base: int = 0
               ) -> pd.DataFrame:
    seg = rng.choice(len(SEG_NAMES), size=n, p=[s["share"] for s in SEGMENTS.values()])
    new = seg == SEG_NAMES.index("new")
    reg_day = np.where(new, rng.integers(425, 700, n), (-1460 + 2000 * rng.beta(1.5, 1.0, n)).astype(int))
    reg_day = np.minimum(reg_day, 545)
    reg_ts = EPOCH0 + reg_day.astype(np.int64) * DAY + rng.integers(8 * 3600, 23 * 3600, n)
    female = rng.random(n) < 0.55
    age = np.clip(rng.normal(33, 9, n), 18, 65)
    birth = (np.datetime64("2024-12-31", "D") - (age * 365.25).astype(int)).astype("datetime64[D]")
    # places: population × home-market affinity
    pw = np.array([p[3] * V.HOME_PROVINCE_AFFINITY.get(p[0], 1.0) for p in V.PROVINCES])
    prov = rng.choice(len(V.PROVINCES), size=n, p=pw / pw.sum())
    ncity = np.array([len(p[5]) for p in V.PROVINCES])
    cstart = np.concatenate([[0], np.cumsum(ncity)[:-1]])
    cities = [c for p in V.PROVINCES for c in p[5]]
    city = cstart[prov] + (rng.random(n) * ncity[prov]).astype(int)
    street = rng.integers(0, len(V.STREETS_ZH), n)
    house = rng.integers(1, 400, n)
    region = np.array([p[2] for p in V.PROVINCES])[prov]
    # names
    if lang == "zh":
        sw = np.array([s[2] for s in V.SURNAMES])
        sur = rng.choice(len(V.SURNAMES), size=n, p=sw / sw.sum())
        g1 = np.where(female, rng.choice(V.GIVEN_FEMALE, n), rng.choice(V.GIVEN_MALE, n))
        g2 = np.where(female, rng.choice(V.GIVEN_FEMALE, n), rng.choice(V.GIVEN_MALE, n))
        two = rng.random(n) < 0.7
        surname = np.array([s[0] for s in V.SURNAMES])[sur]
        name = np.char.add(np.char.add(surname, g1), np.where(two, g2, ""))
        local = np.array([s[1] for s in V.SURNAMES])[sur]
    else:
        first = np.where(female, rng.choice(V.FIRST_EN_FEMALE, n), rng.choice(V.FIRST_EN_MALE, n))
        last = rng.choice(V.LAST_EN, n)
        name = np.char.add(np.char.add(first, " "), last)
        local = np.char.lower(np.char.add(np.char.add(first, "."), last))
    # unique mobiles: 3-digit carrier prefix + 8 digits (part s of k draws the digits from its own s-th of the range)
    lo8, hi8 = part[0] * 10**8 // part[1], (part[0] + 1) * 10**8 // part[1]
    draws = rng.choice(V.MOBILE_PREFIXES, size=int(n * 1.2) + 100).astype(np.int64) * 10**8 + rng.integers(
        lo8, hi8, int(n * 1.2) + 100)
    _, first_idx = np.unique(draws, return_index=True)
    phone = draws[np.sort(first_idx)][:n]
    rng.shuffle(phone)
    idx = np.arange(base, base + n, dtype=np.int64)
    tag = (idx * 2654435761 + 12345) % 10**8  # bijection on 0..1e8: unique e-mail local parts
    dom = rng.choice(V.EMAIL_DOMAINS, size=n, p=V.EMAIL_DOMAIN_W)
    email = np.char.add(np.char.add(np.char.add(local, pd.Series(tag).astype(str).to_numpy().astype(str)), "@"), dom)
    # resident ID: area code + birth date + sequence (odd = male) + GB 11643 check digit
    area = np.array([c[4] for c in cities])[city]
    seq = rng.integers(0, 500, n) * 2 + np.where(female, 0, 1)
    bstr = pd.Series(birth).dt.strftime("%Y%m%d").to_numpy().astype(str)
    body = np.char.add(np.char.add(area.astype(str), bstr), np.char.zfill(seq.astype(str), 3))
    id_number = np.char.add(body, _check_digits(body))
    level = np.empty(n, dtype=np.int64)
    for i, s in enumerate(SEGMENTS.values()):
        m = seg == i
        level[m] = rng.choice(4, size=int(m.sum()), p=s["level"])
    acq = rng.choice(len(V.CHANNELS), size=n, p=[0.22, 0.18, 0.15, 0.05, 0.10, 0.30])
    upd = reg_ts + (rng.random(n) * (EPOCH0 + NDAYS * DAY - 1 - reg_ts)).astype(np.int64)
    huanan = region == DIP["region"]
    pref = np.where(huanan, rng.choice(3, n, p=[0.25, 0.10, 0.65]), rng.choice(3, n, p=[0.50, 0.25, 0.25]))
    return pd.DataFrame({
        "seg": seg, "reg_ts": reg_ts, "female": female, "birth": birth, "prov": prov, "city": city,
        "street": street, "house": house, "region": region, "name": name, "email": email, "phone": phone,
        "id_number": id_number, "level": level, "acq": acq, "upd_ts": upd, "pref_platform": pref,
    })


def _check_digits(body17: np.ndarray) -> np.ndarray:
    """GB 11643-1999 check characters for 17-digit bodies."""
    digits = np.frombuffer("".join(body17.tolist()).encode("ascii"), dtype=np.uint8).reshape(-1, 17) - 48
    w = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2])
    return np.array(list("10X98765432"))[(digits.astype(np.int64) @ w) % 11]


def id_check_ok(idn: str) -> bool:
    """True when an 18-character resident ID has a correct GB 11643 check character."""
    if len(idn) != 18 or not idn[:17].isdigit():
        return False
    return str(_check_digits(np.array([idn[:17]]))[0]) == idn[17].upper()


# ---------------------------------------------------------------- orders
def _orders(rng: np.random.Generator, cu: pd.DataFrame, order_rate: float = 1.0) -> dict[str, Any]:
    """Order times from gamma renewal processes in seasonal time, truncated by churn; plus tickets.

    order_rate multiplies every customer's purchase frequency (divides the mean gap between orders)."""
    n = len(cu)
    seg = cu["seg"].to_numpy()
    spec = [SEGMENTS[s] for s in SEG_NAMES]
    w = _day_weights()
    wb = _day_weights(1.8)  # bargain hunters follow promotions more strongly
    grid = np.arange(NDAYS + 1, dtype=float)
    C = np.concatenate([[0.0], np.cumsum(w)])
    Cb = np.concatenate([[0.0], np.cumsum(wb)])
    bargain = seg == SEG_NAMES.index("bargain_hunter")
    a = np.clip((cu["reg_ts"].to_numpy() - EPOCH0) / DAY, 0, None)
    u0 = np.where(bargain, np.interp(a, grid, Cb), np.interp(a, grid, C))
    u1 = float(NDAYS)
    gap = np.array([s["gap"] for s in spec])[seg] * rng.lognormal(0, 0.35, n) / order_rate
    inside = a > 0
    first = np.where(inside, u0 + rng.exponential(20, n), u0 + rng.gamma(GAP_SHAPE + 1, 1, n) * gap / GAP_SHAPE
                     * rng.random(n))
    buyer = rng.random(n) >= np.array([s["never"] for s in spec])[seg]
    m = np.where(buyer & (first < u1), np.ceil((u1 - first) / gap * 1.6).astype(np.int64) + 3, 0)
    owner = np.repeat(np.arange(n), m)
    starts = np.concatenate([[0], np.cumsum(m)[:-1]])[m > 0]
    g = rng.gamma(GAP_SHAPE, 1.0, len(owner)) * (gap / GAP_SHAPE)[owner]
    g[starts] = 0.0
    grp = np.repeat(np.arange(len(starts)), m[m > 0])
    op = first[owner] + _grouped_cumsum(g, starts, grp)
    keep = op < u1
    owner, op = owner[keep], op[keep]
    bo = bargain[owner]
    day = np.floor(np.where(bo, np.interp(op, Cb, grid), np.interp(op, C, grid))).astype(np.int64)
    day = np.clip(day, 0, NDAYS - 1)
    sec = rng.choice(24, size=len(owner), p=HOUR_W) * 3600 + rng.integers(0, 3600, len(owner))
    ts = EPOCH0 + day * DAY + sec
    reg = cu["reg_ts"].to_numpy()[owner]
    ts = np.where(ts <= reg, np.minimum(reg + rng.integers(300, 7200, len(ts)), EPOCH0 + NDAYS * DAY - 1), ts)
    # ---- churn: baseline hazard after a 90-day grace, raised for few early orders
    order = np.lexsort((ts, owner))
    owner, ts = owner[order], ts[order]
    cnt = np.bincount(owner, minlength=n)
    fst = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(fst, owner, ts)
    early = np.bincount(owner, weights=(ts < fst[owner] + 90 * DAY), minlength=n).astype(int)
    few_early = (cnt > 0) & (early <= 1)
    churn_mean = np.array([s["churn"] for s in spec])[seg] / np.where(few_early, FEW_EARLY_MULT, 1.0)
    t0 = fst + 90 * DAY + (rng.exponential(1.0, n) * churn_mean * DAY).astype(np.int64)
    # ---- tickets: raised after orders; a low rating can make the customer leave
    tk_o = np.flatnonzero(rng.random(len(ts)) < np.array([s["ticket"] for s in spec])[seg[owner]])
    nt = len(tk_o)
    theme = rng.choice(len(V.TICKET_THEMES), size=nt, p=V.TICKET_THEME_W)
    created = ts[tk_o] + (rng.exponential(2.0, nt) * DAY).astype(np.int64) + 600
    slow = theme == 3
    resp = (rng.exponential(np.where(slow, 6.0, 1.5), nt) * 3600).astype(np.int64) + 60
    resolved_after = (rng.exponential(18.0, nt) * 3600).astype(np.int64) + 300
    shift = np.array([t[2] for t in V.TICKET_THEMES])[theme]
    score = 4.1 + shift - 0.1 * np.minimum(resp / 3600, 10) + rng.normal(0, 0.8, nt)
    sat = np.clip(np.round(score), 1, 5)
    rated = rng.random(nt) >= 0.2
    sat = np.where(rated, sat, np.nan)
    tk_owner = owner[tk_o]
    low = rated & (sat <= 2)
    tl = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(tl, tk_owner[low], created[low])
    leave = (tl < np.iinfo(np.int64).max) & (rng.random(n) < LOW_SAT_CHURN_P)
    t1 = np.where(leave, tl + (rng.uniform(1, 30, n) * DAY).astype(np.int64), np.iinfo(np.int64).max)
    churn_ts = np.minimum(t0, t1)
    alive = ts < churn_ts[owner]
    # tickets follow their order; tickets after the data end are not in the export
    tk_keep = alive[tk_o] & (created < EPOCH0 + NDAYS * DAY)
    new_index = np.cumsum(alive) - 1
    tickets = dict(order=new_index[tk_o[tk_keep]], owner=tk_owner[tk_keep], created=created[tk_keep],
                   resp=resp[tk_keep], resolved_after=resolved_after[tk_keep], theme=theme[tk_keep],
                   sat=sat[tk_keep], unresolved=rng.random(int(tk_keep.sum())) < 0.05)
    mech = dict(churn_ts=churn_ts, few_early_mech=few_early, low_sat_leave=leave)
    return dict(owner=owner[alive], ts=ts[alive], tickets=tickets, mech=mech)


def _products(rng: np.random.Generator, lang: str, n: int = 500) -> pd.DataFrame:
    j = np.arange(n)
    cat = j % len(V.CATEGORIES)
    stem = (j // len(V.CATEGORIES)) % 6
    base = np.array([c[2] for c in V.CATEGORIES])[cat]
    sig = np.array([c[3] for c in V.CATEGORIES])[cat]
    price = np.maximum(np.round(base * rng.lognormal(-sig**2 / 2, sig, n)) - 0.1, 4.9)
    brand = rng.integers(0, len(V.BRANDS_ZH), n)
    variant = j // (len(V.CATEGORIES) * 6) + 1
    if lang == "zh":
        nm = [f"{V.BRANDS_ZH[b]}{V.CATEGORIES[c][4][s]} {v}号款" for b, c, s, v in zip(brand, cat, stem, variant,
                                                                                        strict=True)]
        cn = [V.CATEGORIES[c][0] for c in cat]
    else:
        nm = [f"{V.BRANDS_EN[b]} {V.CATEGORIES[c][5][s]} No.{v}" for b, c, s, v in zip(brand, cat, stem, variant,
                                                                                       strict=True)]
        cn = [V.CATEGORIES[c][1] for c in cat]
    pop = 1.0 / (rng.permutation(n) + 5.0) ** 0.9
    quality = rng.normal(0, 0.35, n)
    quality[rng.choice(n, 15, replace=False)] = -1.6  # a few bad products that draw 1-star reviews
    df = pd.DataFrame({"product_id": [f"P{i + 1:05d}" for i in j], "name": nm, "category": cn, "price": price,
                       "cat": cat, "stem": stem, "pop": pop, "quality": quality})
    med = float(np.median(pop))
    bundles = []
    for items, p in BUNDLES:
        ids = []
        for c, s in items:
            k = int(np.flatnonzero((df["cat"] == c) & (df["stem"] == s))[0])
            df.loc[k, "pop"] = med
            ids.append(k)
        bundles.append((ids, p))
    df.attrs["bundles"] = bundles
    return df


def _items(rng: np.random.Generator, nord: int, seg_o: np.ndarray, products: pd.DataFrame,
           night_big: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """Order lines: popular products plus planted bundles; returns lines and the bundle index per order."""
    spec = [SEGMENTS[s] for s in SEG_NAMES]
    lines = 1 + np.minimum(rng.poisson(np.array([s["lines"] for s in spec])[seg_o]), 4)
    bundles = products.attrs["bundles"]
    u = rng.random(nord)
    which = np.full(nord, -1)
    acc = 0.0
    for b, (_ids_b, p) in enumerate(bundles):
        which[(u >= acc) & (u < acc + p)] = b
        acc += p
    bsize = np.array([len(ids) for ids, _ in bundles] + [0])[which]
    lines = np.maximum(lines, bsize + (rng.random(nord) < 0.3))
    oid = np.repeat(np.arange(nord), lines)
    pos = np.arange(len(oid)) - np.repeat(np.cumsum(lines) - lines, lines)
    pop = products["pop"].to_numpy()
    prod = rng.choice(len(products), size=len(oid), p=pop / pop.sum())
    for b, (ids, _) in enumerate(bundles):
        for k, pid in enumerate(ids):
            prod[(which[oid] == b) & (pos == k)] = pid
    df = pd.DataFrame({"o": oid, "prod": prod}).drop_duplicates(["o", "prod"])
    df["line"] = df.groupby("o").cumcount() + 1
    q = 1 + rng.poisson(0.3, len(df))
    q = np.where(night_big[df["o"].to_numpy()], q * rng.integers(10, 25, len(df)), q)
    df["quantity"] = q
    df["unit_price"] = products["price"].to_numpy()[df["prod"].to_numpy()]
    return df.reset_index(drop=True), which


def _build(rng: np.random.Generator, n: int, lang: str, progress: ProgressFn, order_rate: float = 1.0, *,
           part: tuple[int, int] = (0, 1), base: int = 0, catalog: pd.DataFrame | None = None) -> dict[str, Any]:
    cu = _customers(rng, n, lang, part, base)
    progress("customers", 1.0)
    od = _orders(rng, cu, order_rate)
    owner, ts = od["owner"], od["ts"]
    seg = cu["seg"].to_numpy()
    # ---- planted risky customers (appended orders)
    pool = np.flatnonzero(np.isin(seg, [0, 1]) & (np.bincount(owner, minlength=n) >= 2))
    n_an = min(12, max(1, len(pool) // 30))
    chosen = rng.choice(pool, size=3 * n_an, replace=False) if len(pool) >= 3 * n_an else pool[:0]
    kinds = {"refund_abuse": chosen[:n_an], "velocity": chosen[n_an:2 * n_an], "night_big_orders": chosen[2 * n_an:]}
    extra_owner, extra_ts, extra_kind = [], [], []
    for c in kinds["refund_abuse"]:
        k = int(rng.integers(9, 14))
        extra_owner += [c] * k
        extra_ts += list(EPOCH0 + 365 * DAY + np.sort(rng.integers(0, 360 * DAY, k)))
        extra_kind += [1] * k
    for c in kinds["velocity"]:
        k = int(rng.integers(6, 10))
        t0 = EPOCH0 + int(rng.integers(400, 720)) * DAY + int(rng.integers(10, 20)) * 3600
        extra_owner += [c] * k
        extra_ts += list(t0 + np.sort(rng.integers(0, 3300, k)))
        extra_kind += [2] * k
    for c in kinds["night_big_orders"]:
        k = int(rng.integers(2, 4))
        days = rng.integers(400, 725, k)
        extra_owner += [c] * k
        extra_ts += list(EPOCH0 + days * DAY + rng.integers(2 * 3600, 5 * 3600, k))
        extra_kind += [3] * k
    kind = np.concatenate([np.zeros(len(owner), dtype=int), np.array(extra_kind, dtype=int)])
    owner = np.concatenate([owner, np.array(extra_owner, dtype=np.int64)])
    ts = np.concatenate([ts, np.array(extra_ts, dtype=np.int64)])
    nord = len(owner)
    # ---- order attributes
    so = seg[owner]
    pref = cu["pref_platform"].to_numpy()[owner]
    platform = np.where(rng.random(nord) < 0.75, pref, rng.integers(0, 3, nord))
    acq = cu["acq"].to_numpy()[owner]
    channel = np.where(rng.random(nord) < 0.4, acq, rng.choice(len(V.CHANNELS), size=nord, p=CHANNEL_MIX))
    bp = np.where(so == SEG_NAMES.index("bargain_hunter"), 0.08, 0.05)
    r = rng.random(nord)
    status = np.where(r < bp, 1, np.where(r < bp + 0.03, 2, 0))
    status[kind == 1] = np.where(rng.random(int((kind == 1).sum())) < 0.8, 1, 0)
    status[kind >= 2] = 0
    pay = rng.choice(len(V.PAYMENTS), size=nord, p=V.PAYMENT_W)
    products = _products(rng, lang)
    if catalog is not None:  # a later part of a sharded run sells the first part's catalog (drawn all the same,
        products = catalog   # so each part's random stream has the same shape)
    items, bundle_of = _items(rng, nord, so, products, kind == 3)
    gross = np.bincount(items["o"], weights=items["quantity"] * items["unit_price"], minlength=nord)
    spec = [SEGMENTS[s] for s in SEG_NAMES]
    lo, hi = np.array([s["disc"][0] for s in spec])[so], np.array([s["disc"][1] for s in spec])[so]
    month = (ts - EPOCH0).astype("timedelta64[s]").astype("timedelta64[D]").astype(int)
    mon = (START + month).astype("datetime64[M]").astype(int) % 12 + 1
    promo = np.isin(mon, [6, 11, 12])
    rate = lo + (hi - lo) * rng.random(nord) + np.where(promo, 0.05, 0.0)
    rate = np.where(kind > 0, 0.0, rate)
    discount = _money(np.floor(gross * rate))
    amount = _money(gross - discount)
    # ---- the planted dip: South China mini-program orders lost in 2024-08
    in_month = (START + month).astype("datetime64[M]") == np.datetime64(DIP["month"], "M")
    region_o = cu["region"].to_numpy()[owner]
    lost = (in_month & (region_o == DIP["region"]) & (platform == V.PLATFORMS.index(DIP["platform"]))
            & (kind == 0) & (rng.random(nord) < DIP["loss_p"]))
    progress("orders", 1.0)
    return dict(lang=lang, shard=part[0], base=base, cu=cu, od=od, owner=owner, ts=ts, kind=kind, platform=platform, channel=channel, status=status,
                pay=pay, products=products, items=items, bundle_of=bundle_of, discount=discount, amount=amount,
                lost=lost, anomalies=kinds)


# ---------------------------------------------------------------- writing
def _write_header(path: Path, header: list[str], encoding: str = "utf-8") -> None:
    path.write_bytes((",".join(header) + "\n").encode(encoding))


def _write_table(out: Path, stem: str, table: pa.Table, fmt: str, *, force_csv: bool = False) -> tuple[str, str]:
    """Write one table as csv / parquet / xlsx; returns (relative file, note)."""
    note = ""
    if fmt == "xlsx" and (force_csv or table.num_rows > XLSX_MAX_ROWS):
        fmt, note = "csv", "kept as CSV: too many rows for a sensible xlsx sheet"
    if fmt == "parquet":
        name = f"{stem}.parquet"
        pq.write_table(table, out / name)
    elif fmt == "xlsx":
        name = f"{stem}.xlsx"
        _write_xlsx(out / name, table)
    else:
        name = f"{stem}.csv"
        _write_header(out / name, table.column_names)
        with open(out / name, "ab") as f:
            pacsv.write_csv(table, f, pacsv.WriteOptions(include_header=False, quoting_style="needed"))
    return name, note


def _write_xlsx(path: Path, table: pa.Table, date_col: str | None = None, serial_rows: set[int] | None = None,
                text_rows: dict[int, str] | None = None) -> None:
    import xlsxwriter  # noqa: PLC0415

    wb = xlsxwriter.Workbook(str(path), {"constant_memory": True, "strings_to_numbers": False})
    ws = wb.add_worksheet("data")
    datefmt = wb.add_format({"num_format": "yyyy-mm-dd"})
    cols = table.column_names
    ws.write_row(0, 0, cols)
    data = [table.column(c).to_pylist() for c in cols]
    serial_rows = serial_rows or set()
    text_rows = text_rows or {}
    base = pd.Timestamp("1899-12-30")
    for r in range(table.num_rows):
        for ci, c in enumerate(cols):
            v = data[ci][r]
            if v is None:
                continue
            if c == date_col:
                d = pd.Timestamp(v)
                if r in serial_rows:
                    ws.write_number(r + 1, ci, (d - base).days)
                elif r in text_rows:
                    ws.write_string(r + 1, ci, text_rows[r])
                else:
                    ws.write_datetime(r + 1, ci, d.to_pydatetime(), datefmt)
            else:
                ws.write(r + 1, ci, v)
    wb.close()


def generate(out: Path | str, customers: int = 50_000, seed: int = 42, lang: str = "zh", fmt: str = "csv",
             dirty: bool = True, progress: ProgressFn | None = None, *, order_rate: float = 1.0,
             tracked_share: float = 1.0, shards: int = 1) -> GenerateResult:
    """Write the demo exports, manifest.json and truth.json into `out`; same seed → identical files.

    The shape knobs size the data without touching the planted mechanisms (the defaults write the demo):
    order_rate multiplies every customer's purchase frequency (2.2 → ~10 orders per customer instead of
    ~4.5); tracked_share is the share of the tracked orders whose site/app sessions are in the event log
    (0.5 → about half the events per order), as when tracking covers only part of the traffic.

    shards > 1 writes the customers in that many parts, one after another, each into its own folder
    (part-01, part-02, …) with its own exports, manifest and planted truths, so memory is one part's
    (generation holds a part's customers and orders in memory: ~13 GB per million customers at size M's
    shape). The parts share the first part's product catalog; every id, mobile number and e-mail is
    unique across parts, and a later part's campaigns carry its number (抖音信息流 #2). The top-level
    manifest lists every part's files (paths relative to `out`) and truth.json lists the parts' truths.
    """
    if lang not in ("zh", "en"):
        raise InputError(f"unknown language {lang!r}", where="--lang", fix="use zh or en")
    if fmt not in ("csv", "parquet", "xlsx"):
        raise InputError(f"unknown file format {fmt!r}", where="--format", fix="use csv, parquet or xlsx")
    if customers < 100:
        raise InputError(f"--customers {customers} is too small for the planted truths", where="--customers",
                         fix="use at least 100 customers (2,000 or more recommended)")
    if not 0.1 <= order_rate <= 20:
        raise InputError(f"order rate {order_rate} is out of range", where="--order-rate",
                         fix="use a multiplier between 0.1 and 20 (1 = the demo's ~4.5 orders per customer)")
    if not 0 < tracked_share <= 1:
        raise InputError(f"tracked share {tracked_share} is out of range", where="--tracked-share",
                         fix="use a share above 0 and at most 1 (1 = every tracked order's sessions)")
    if not 1 <= shards <= 99 or customers // shards < 100:
        raise InputError(f"--shards {shards} does not fit {customers:,} customers", where="--shards",
                         fix="use 1 to 99 parts of at least 100 customers each")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    prog = progress or (lambda stage, frac: None)
    if shards == 1:
        return _generate_part(out, customers, np.random.default_rng(seed), seed, lang, fmt, dirty, prog,
                              order_rate, tracked_share)[0]
    manifest: list[dict[str, Any]] = []
    rows: dict[str, int] = {}
    parts: list[str] = []
    catalog: pd.DataFrame | None = None
    base = 0
    for s in range(shards):
        n_s = customers // shards + (1 if s < customers % shards else 0)
        sub = f"part-{s + 1:02d}"

        def sub_prog(stage: str, frac: float, s: int = s) -> None:
            prog(f"{stage} ({s + 1}/{shards})", (s + frac) / shards)

        res, catalog = _generate_part(out / sub, n_s, np.random.default_rng([seed, s]), seed, lang, fmt, dirty,
                                      sub_prog, order_rate, tracked_share, part=(s, shards), base=base,
                                      catalog=catalog)
        manifest += [{**e, "file": f"{sub}/{e['file']}", "part": s + 1} for e in res.manifest]
        rows.update({f"{sub}/{k}": v for k, v in res.rows.items()})
        parts.append(f"{sub}/truth.json")
        base += n_s
    truth = {"customers": customers, "seed": seed, "lang": lang, "shards": shards, "parts": parts,
             "note": "each part's planted truths are measured on that part alone (see its truth.json)"}
    (out / "truth.json").write_text(json.dumps(truth, ensure_ascii=False, indent=2), encoding="utf-8")
    (out / "manifest.json").write_text(json.dumps({"files": manifest, "as_of": AS_OF, "seed": seed, "lang": lang,
                                                   "customers": customers, "order_rate": order_rate,
                                                   "tracked_share": tracked_share, "shards": shards},
                                                  ensure_ascii=False, indent=2), encoding="utf-8")
    prog("done", 1.0)
    return GenerateResult(out=out, manifest=manifest, truth=truth, rows=rows)


def _generate_part(out: Path, customers: int, rng: np.random.Generator, seed: int, lang: str, fmt: str, dirty: bool,
                   prog: ProgressFn, order_rate: float, tracked_share: float, *, part: tuple[int, int] = (0, 1),
                   base: int = 0, catalog: pd.DataFrame | None = None) -> tuple[GenerateResult, pd.DataFrame]:
    """One folder of exports: the whole demo, or one part of a sharded run (customers base+1 … base+customers)."""
    out.mkdir(parents=True, exist_ok=True)
    b = _build(rng, customers, lang, prog, order_rate, part=part, base=base, catalog=catalog)
    b["tracked_share"] = tracked_share
    products = b["products"]
    dirt: dict[str, Any] = {"enabled": dirty, "rates": dict(DIRT) if dirty else {}}
    manifest: list[dict[str, Any]] = []
    rows: dict[str, int] = {}

    def add(file: str, table: str, note: str, nrows: int, encoding: str = "utf-8") -> None:
        manifest.append({"file": file, "table": table, "encoding": encoding, "rows": nrows, "note": note})
        rows[file] = nrows

    # ---- customers (CRM) + app users
    crm_file, crm_rows, app_file, app_rows, ident = _write_customers(out, rng, b, lang, fmt, dirty, dirt)
    add(crm_file, "customers", "CRM export; key duplicates are older versions (earlier update time)", crm_rows)
    add(app_file, "customers", "app accounts with their own user ids; link to CRM by mobile", app_rows)
    prog("customers", 1.0)
    # ---- products
    ptab = pa.table({"product_id": products["product_id"], "name": products["name"],
                     "category": products["category"], "price": products["price"]})
    f, note = _write_table(out, "products", ptab, fmt)
    add(f, "products", note or "product catalog", ptab.num_rows)
    # ---- orders + items (clean frames kept for the truths)
    orders_clean, items_clean = _clean_orders(b)
    f, n_o = _write_orders(out, rng, b, orders_clean, lang, fmt, dirty, dirt)
    add(f, "orders", "order system export; amounts may carry ¥ and thousands separators, dates mixed formats", n_o)
    itab = pa.table({"order_id": pa.array(items_clean["order_id"]), "line": items_clean["line"],
                     "product_id": pa.array(items_clean["product_id"]), "category": pa.array(items_clean["category"]),
                     "quantity": items_clean["quantity"], "unit_price": items_clean["unit_price"]})
    f, note = _write_table(out, "order_items", itab, fmt)
    add(f, "order_items", note or "order lines", itab.num_rows)
    prog("orders", 1.0)
    # ---- tickets, reviews, survey
    tickets_clean = _tickets_frame(b, lang)
    f, n_t = _write_tickets(out, tickets_clean, lang, fmt)
    add(f, "tickets", note or "customer-service desk export; satisfaction empty when the customer did not rate",
        n_t)
    reviews = _reviews(rng, b, orders_clean, tickets_clean, lang)
    with open(out / "reviews.jsonl", "w", encoding="utf-8") as fh:
        for rec in reviews.to_dict("records"):
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    add("reviews.jsonl", "feedback", "product reviews (source = review)", len(reviews))
    survey = _survey(rng, b, orders_clean, tickets_clean)
    _write_header(out / "survey_gbk.csv", list(survey.columns), "gbk")
    with open(out / "survey_gbk.csv", "ab") as fh:
        fh.write(survey.to_csv(index=False, header=False, lineterminator="\n").encode("gbk"))
    add("survey_gbk.csv", "feedback", "NPS survey vendor export (0–10 rating), GBK-encoded, Chinese text",
        len(survey), "gbk")
    prog("service", 1.0)
    # ---- channel spend
    spend, roi = _spend(rng, b, orders_clean, lang)
    f = _write_spend(out, rng, spend, dirty, dirt)
    add(f, "channel_spend", "marketing daily spend; dates are Excel dates, some as serial numbers or text",
        len(spend))
    # ---- events (chunked)
    ev_file, n_ev, funnel_counts = _write_events(out, rng, b, fmt, dirty, dirt, prog)
    add(ev_file, "events", "web/app/mini-program behaviour log"
        + ("; kept as CSV (too large for xlsx)" if fmt == "xlsx" else ""), n_ev)
    # ---- truth + manifest
    truth = T.measure(b=b, orders=orders_clean, items=items_clean, tickets=tickets_clean, funnel_counts=funnel_counts,
                      roi_plan=roi, spend=spend, ident=ident, as_of=AS_OF, seed=seed, n=customers, lang=lang)
    truth["dirt"] = dirt
    truth["files"] = rows
    _write_truth_customers(out, b)
    (out / "truth.json").write_text(json.dumps(truth, ensure_ascii=False, indent=2, default=_json_default),
                                    encoding="utf-8")
    (out / "manifest.json").write_text(json.dumps({"files": manifest, "as_of": AS_OF, "seed": seed, "lang": lang,
                                                   "customers": customers, "order_rate": order_rate,
                                                   "tracked_share": tracked_share}, ensure_ascii=False, indent=2),
                                       encoding="utf-8")
    prog("done", 1.0)
    return GenerateResult(out=out, manifest=manifest, truth=truth, rows=rows), products


def _write_truth_customers(out: Path, b: dict[str, Any]) -> None:
    """Per-customer latent truth (not a source file): segment, planted churn date, region, app id."""
    cu = b["cu"]
    churn = b["od"]["mech"]["churn_ts"]
    end = EPOCH0 + NDAYS * DAY
    churn_s = np.where(churn < end, _fmt_ts(np.minimum(churn, end - 1)), None)
    kind = np.full(len(cu), "", dtype=object)
    for k, v in b["anomalies"].items():
        kind[v] = k
    tab = pa.table({"customer_id": _cust_ids(b), "segment": np.array(SEG_NAMES, dtype=object)[cu["seg"]],
                    "region": cu["region"].to_numpy().astype(object), "planted_churn_time": pa.array(churn_s,
                                                                                                   pa.string()),
                    "low_satisfaction_exit": b["od"]["mech"]["low_sat_leave"], "anomaly": kind,
                    "app_user_id": pa.array(cu["app_id"].tolist(), pa.string(), from_pandas=True)})
    _write_header(out / "truth_customers.csv", tab.column_names)
    with open(out / "truth_customers.csv", "ab") as f:
        pacsv.write_csv(tab, f, pacsv.WriteOptions(include_header=False, quoting_style="needed"))


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


# ---------------------------------------------------------------- per-table writers
CRM_HEADERS = {
    "zh": ["客户ID", "姓名", "性别", "出生日期", "手机号", "邮箱", "身份证号", "省份", "城市", "地址", "会员等级",
           "注册时间", "获客渠道", "更新时间"],
    "en": ["customer_id", "name", "gender", "birth_date", "mobile", "email", "id_number", "province", "city",
           "address", "member_level", "register_time", "acquisition_channel", "updated_at"],
}
APP_HEADERS = ["user_id", "username", "mobile", "register_time", "signup_channel", "updated_at"]
ORDER_HEADERS = {
    "zh": ["订单号", "用户ID", "下单时间", "实付金额", "订单状态", "支付方式", "渠道", "优惠金额", "平台"],
    "en": ["order_id", "user_id", "order_time", "paid_amount", "order_status", "payment_method", "channel",
           "discount_amount", "platform"],
}
TICKET_HEADERS = {
    "zh": ["工单号", "用户ID", "创建时间", "首次响应时间", "解决时间", "问题类型", "渠道", "满意度评分", "问题描述"],
    "en": ["ticket_id", "user_id", "created_time", "first_response_time", "resolved_time", "category", "channel",
           "satisfaction", "description"],
}
EVENT_HEADERS = ["event_id", "user_id", "anonymous_id", "event", "event_time", "session_id", "product_id",
                 "duration", "channel", "platform"]
SPEND_HEADERS = {"zh": ["日期", "渠道", "活动", "曝光量", "访客数", "点击量", "花费"],
                 "en": ["date", "channel", "campaign", "impressions", "visitors", "clicks", "cost"]}
SURVEY_HEADERS = ["问卷ID", "用户ID", "反馈时间", "评分", "反馈内容"]
REVIEW_KEYS = ["review_id", "user_id", "review_time", "product_id", "rating", "content"]


def crm_ids(n: int, base: int = 0) -> np.ndarray:
    """CRM customer ids C00000001…; a later part of a sharded run numbers on from `base`."""
    return np.array([f"C{i + 1:08d}" for i in range(base, base + n)], dtype=object)


def _cust_ids(b: dict[str, Any]) -> np.ndarray:
    return crm_ids(len(b["cu"]), b["base"])


def _tag(prefix: str, b: dict[str, Any]) -> str:
    """An id prefix unique to the part: the demo's own, and two more digits for part s > 0 of a sharded run
    (O0000000001 in part 0, O010000000001 in part 1: different lengths, so no id repeats across parts)."""
    s = b["shard"]
    return prefix if s == 0 else f"{prefix}{s:02d}"


def _write_customers(out: Path, rng: np.random.Generator, b: dict[str, Any], lang: str, fmt: str, dirty: bool,
                     dirt: dict[str, Any]) -> tuple[str, int, str, int, dict[str, Any]]:
    cu = b["cu"]
    n = len(cu)
    zh = lang == "zh"
    ids = _cust_ids(b)
    cities = [c for p in V.PROVINCES for c in p[5]]
    prov = cu["prov"].to_numpy()
    city = cu["city"].to_numpy()
    pz = np.array([p[0] for p in V.PROVINCES], dtype=object)[prov]
    pe = np.array([p[4] for p in V.PROVINCES], dtype=object)[prov]
    cz = np.array([c[0] for c in cities], dtype=object)[city]
    ce = np.array([c[1] for c in cities], dtype=object)[city]
    dz = np.array([c[2] for c in cities], dtype=object)[city]
    de = np.array([c[3] for c in cities], dtype=object)[city]
    st = cu["street"].to_numpy()
    house = cu["house"].to_numpy().astype(str).astype(object)
    if zh:
        muni = pz == cz
        addr = np.where(muni, pz, pz + cz) + dz + np.array(V.STREETS_ZH, dtype=object)[st] + house + "号"
        prov_col, city_col = pz, cz
    else:
        addr = house + " " + np.array(V.STREETS_EN, dtype=object)[st] + ", " + de + ", " + ce + ", " + pe
        prov_col, city_col = pe, ce
    li = 0 if zh else 1
    gender = np.array([V.GENDERS[1][li], V.GENDERS[0][li]], dtype=object)[np.where(cu["female"], 0, 1)]
    level = np.array([m[li] for m in V.MEMBER_LEVELS], dtype=object)[cu["level"].to_numpy()]
    acq = np.array([c[li] for c in V.CHANNELS], dtype=object)[cu["acq"].to_numpy()]
    phone = cu["phone"].to_numpy().astype(str).astype(object)
    df = pd.DataFrame({
        "id": ids, "name": cu["name"].to_numpy().astype(object), "gender": gender,
        "birth": pd.Series(cu["birth"]).dt.strftime("%Y-%m-%d").to_numpy().astype(object), "phone": phone,
        "email": cu["email"].to_numpy().astype(object), "idn": cu["id_number"].to_numpy().astype(object),
        "prov": prov_col, "city": city_col, "addr": addr, "level": level,
        "reg": _fmt_ts(cu["reg_ts"].to_numpy()), "acq": acq, "upd": _fmt_ts(cu["upd_ts"].to_numpy()),
    })
    email_missing = _pick(rng, n, _count(DIRT["email_missing"], n))  # natural: many never gave an e-mail
    df.loc[email_missing, "email"] = None
    d = {}
    if dirty:
        k = _count(DIRT["customers_keydup"], n)
        old = _pick(rng, n, k)
        prev = df.loc[old].copy()
        upd_old = cu["reg_ts"].to_numpy()[old] + ((cu["upd_ts"].to_numpy()[old] - cu["reg_ts"].to_numpy()[old])
                                                   * rng.uniform(0.1, 0.9, len(old))).astype(np.int64)
        prev["upd"] = _fmt_ts(upd_old)
        lv = np.maximum(cu["level"].to_numpy()[old] - 1, 0)
        prev["level"] = np.array([m[li] for m in V.MEMBER_LEVELS], dtype=object)[lv]
        moved = np.array(V.STREETS_ZH if zh else V.STREETS_EN, dtype=object)[rng.integers(0, 20, len(old))]
        prev["addr"] = (prev["prov"] + prev["city"] + moved + "8号") if zh else ("8 " + moved + ", " + prev["city"])
        df = pd.concat([df, prev], ignore_index=True)
        df = df.iloc[rng.permutation(len(df))].reset_index(drop=True)
        rows = len(df)
        gm = _pick(rng, rows, _count(DIRT["gender_missing"], rows))
        df.loc[gm, "gender"] = None
        lm = _pick(rng, rows, _count(DIRT["member_level_missing"], rows))
        df.loc[lm, "level"] = None
        pf = _pick(rng, rows, _count(DIRT["phone_format"], rows))
        p = df.loc[pf, "phone"].astype(str)
        df.loc[pf, "phone"] = np.where(np.arange(len(pf)) % 2 == 0, "+86 " + p.str[:3] + " " + p.str[3:7] + " "
                                       + p.str[7:], p.str[:3] + "-" + p.str[3:7] + "-" + p.str[7:])
        rs = _pick(rng, rows, _count(DIRT["register_date_slash"] + DIRT["register_date_compact"], rows))
        ns = _count(DIRT["register_date_slash"], rows)
        rts = pd.to_datetime(df.loc[rs, "reg"]).astype("int64").to_numpy() // 10**9
        df.loc[rs[:ns], "reg"] = _date_variants(rts[:ns], "slash")
        df.loc[rs[ns:], "reg"] = _date_variants(rts[ns:], "compact")
        d["customers"] = {"rows": rows, "key_duplicates": int(len(old)), "key_duplicate_ids": ids[old].tolist()[:50],
                          "gender_missing": int(len(gm)), "member_level_missing": int(len(lm)),
                          "phone_format_variants": int(len(pf)), "register_date_slash": int(ns),
                          "register_date_compact": int(len(rs) - ns)}
    rows = len(df)
    d.setdefault("customers", {"rows": rows})["email_missing"] = int(df["email"].isna().sum())
    dirt.update(d)
    tab = pa.Table.from_pandas(df, preserve_index=False).rename_columns(CRM_HEADERS[lang])
    crm_file, _ = _write_table(out, "crm_customers", tab, fmt)
    # app accounts: a share of customers signed up in the app with a new id but the same mobile
    share = 0.05
    app_idx = _pick(rng, n, _count(share, n))
    app_ids = np.array([f"{_tag('U', b)}{x:09d}" for x in rng.choice(10**9, size=len(app_idx), replace=False)], dtype=object)
    nick = (np.array(["小", "大", "阿", "老"], dtype=object)[rng.integers(0, 4, len(app_idx))]
            + np.array(list("明红杰芳强丽伟静"), dtype=object)[rng.integers(0, 8, len(app_idx))]
            + rng.integers(10, 999, len(app_idx)).astype(str).astype(object)) if zh else (
        np.array(["sunny", "coolcat", "traveler", "foodie", "runner"], dtype=object)[rng.integers(0, 5, len(app_idx))]
        + rng.integers(10, 999, len(app_idx)).astype(str).astype(object))
    areg = np.maximum(cu["reg_ts"].to_numpy()[app_idx], EPOCH0 - 365 * DAY) + rng.integers(1, 200, len(app_idx)) * DAY
    areg = np.minimum(areg, EPOCH0 + (NDAYS - 2) * DAY)
    ach = np.array([c[li] for c in V.APP_CHANNELS], dtype=object)[rng.integers(0, 2, len(app_idx))]
    aupd = areg + rng.integers(0, 30, len(app_idx)) * DAY
    app = pa.table({APP_HEADERS[0]: app_ids, APP_HEADERS[1]: nick,
                    APP_HEADERS[2]: cu["phone"].to_numpy()[app_idx].astype(str),
                    APP_HEADERS[3]: _fmt_ts(areg), APP_HEADERS[4]: ach,
                    APP_HEADERS[5]: _fmt_ts(np.minimum(aupd, EPOCH0 + NDAYS * DAY - 1))})
    app_file, _ = _write_table(out, "app_users", app, fmt)
    app_of = np.full(n, None, dtype=object)
    app_of[app_idx] = app_ids
    cu["app_id"] = app_of
    ident = {"pairs": [[ids[i], a] for i, a in zip(app_idx, app_ids, strict=True)], "count": int(len(app_idx)),
             "share": share, "link_on": "phone"}
    return crm_file, rows, app_file, app.num_rows, ident


def _clean_orders(b: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Clean orders/items frames (lost orders removed), ordered by time, with canonical values."""
    keep = ~b["lost"]
    idx = np.flatnonzero(keep)
    idx = idx[np.argsort(b["ts"][idx], kind="stable")]
    oid = np.asarray(_ids(_tag("O", b), np.arange(1, len(idx) + 1), 10).to_numpy(zero_copy_only=False), dtype=object)
    ids = _cust_ids(b)
    owner = b["owner"][idx]
    orders = pd.DataFrame({
        "order_id": oid, "cust": owner, "user_id": ids[owner], "ts": b["ts"][idx], "amount": b["amount"][idx],
        "status": np.array(["paid", "refunded", "cancelled"])[b["status"][idx]],
        "channel": np.array([c[0] for c in V.CHANNELS])[b["channel"][idx]],
        "platform": np.array(V.PLATFORMS)[b["platform"][idx]], "discount": b["discount"][idx],
        "pay": b["pay"][idx], "kind": b["kind"][idx], "bundle": b["bundle_of"][idx], "src": idx,
        "region": b["cu"]["region"].to_numpy()[owner],
    })
    newpos = np.full(len(b["ts"]), -1)
    newpos[idx] = np.arange(len(idx))
    it = b["items"]
    it = it[newpos[it["o"].to_numpy()] >= 0].copy()
    it["pos"] = newpos[it["o"].to_numpy()]
    it = it.sort_values(["pos", "line"], kind="stable")
    prods = b["products"]
    items = pd.DataFrame({"order_id": oid[it["pos"].to_numpy()], "pos": it["pos"].to_numpy(),
                          "line": it["line"].to_numpy(), "product_id": prods["product_id"].to_numpy()[it["prod"]],
                          "category": prods["category"].to_numpy()[it["prod"]],
                          "quantity": it["quantity"].to_numpy(), "unit_price": it["unit_price"].to_numpy()})
    return orders, items.reset_index(drop=True)


def _write_orders(out: Path, rng: np.random.Generator, b: dict[str, Any], o: pd.DataFrame, lang: str, fmt: str,
                  dirty: bool, dirt: dict[str, Any]) -> tuple[str, int]:
    li = 0 if lang == "zh" else 1
    n = len(o)
    time_s = _fmt_ts(o["ts"].to_numpy())
    amount = o["amount"].to_numpy().astype(float).copy()
    amt_s = np.array([f"{x:.2f}" for x in amount], dtype=object)
    st = {"paid": V.STATUSES[0][li], "refunded": V.STATUSES[1][li], "cancelled": V.STATUSES[2][li]}
    df = pd.DataFrame({
        "order_id": o["order_id"].to_numpy(), "user_id": o["user_id"].to_numpy(), "time": time_s, "amount": amt_s,
        "status": o["status"].map(st).to_numpy(),
        "pay": np.array([p[li] for p in V.PAYMENTS], dtype=object)[o["pay"].to_numpy()],
        "channel": o["channel"].map({c[0]: c[li] for c in V.CHANNELS}).to_numpy(),
        "discount": np.array([f"{x:.2f}" for x in o["discount"].to_numpy()], dtype=object),
        "platform": o["platform"].to_numpy().astype(object),
    })
    if dirty:
        d: dict[str, Any] = {"rows_before_duplicates": n}
        paid = np.flatnonzero(o["status"].to_numpy() == "paid")
        normal = paid[o["kind"].to_numpy()[paid] == 0]
        picks = rng.choice(normal, size=min(len(normal), _count(DIRT["orders_outlier50x"], n) + _count(
            DIRT["orders_negative_paid"], n) + _count(DIRT["orders_future"], n)), replace=False)
        k1, k2 = _count(DIRT["orders_outlier50x"], n), _count(DIRT["orders_negative_paid"], n)
        out50, neg, fut = picks[:k1], picks[k1:k1 + k2], picks[k1 + k2:]
        df.loc[out50, "amount"] = [f"{x * 50:.2f}" for x in amount[out50]]
        df.loc[neg, "amount"] = [f"{-x:.2f}" for x in amount[neg]]
        df.loc[fut, "time"] = _fmt_ts(FUTURE0 + rng.integers(30, 400, len(fut)) * DAY
                                      + o["ts"].to_numpy()[fut] % DAY)
        rest = np.setdiff1d(np.arange(n), picks)
        yuan = rng.choice(rest, size=_count(DIRT["orders_yuan"], n), replace=False)
        df.loc[yuan, "amount"] = [f"¥{float(x):,.2f}" for x in df.loc[yuan, "amount"]]
        perm = rng.permutation(rest)
        ks, kc, km = (_count(DIRT["orders_date_slash"], n), _count(DIRT["orders_date_compact"], n),
                      _count(DIRT["orders_malformed_date"], n))
        sl, cp, mal = perm[:ks], perm[ks:ks + kc], perm[ks + kc:ks + kc + km]
        tsv = o["ts"].to_numpy()
        df.loc[sl, "time"] = _date_variants(tsv[sl], "slash")
        df.loc[cp, "time"] = _date_variants(tsv[cp], "compact")
        df.loc[mal, "time"] = np.array(MALFORMED, dtype=object)[np.arange(len(mal)) % len(MALFORMED)]
        dup = _pick(rng, n, _count(DIRT["orders_dup"], n))
        df = pd.concat([df, df.loc[dup]], ignore_index=False).sort_index(kind="stable").reset_index(drop=True)
        ids = o["order_id"].to_numpy()
        d.update({"exact_duplicates": int(len(dup)), "outlier_50x": int(len(out50)),
                  "outlier_50x_ids": ids[out50].tolist(), "negative_paid": int(len(neg)),
                  "negative_paid_ids": ids[neg].tolist(), "future_time": int(len(fut)),
                  "future_time_ids": ids[fut].tolist(), "yuan_formatted": int(len(yuan)),
                  "date_slash": int(len(sl)), "date_compact": int(len(cp)), "malformed_date": int(len(mal)),
                  "malformed_date_ids": ids[mal].tolist(), "rows": len(df)})
        dirt["orders"] = d
    tab = pa.Table.from_pandas(df, preserve_index=False).rename_columns(ORDER_HEADERS[lang])
    f, _ = _write_table(out, "orders", tab, fmt)
    return f, len(df)


def _tickets_frame(b: dict[str, Any], lang: str) -> pd.DataFrame:
    tk = b["od"]["tickets"]
    li = 0 if lang == "zh" else 1
    order = np.argsort(tk["created"], kind="stable")
    n = len(order)
    rng_text = (tk["created"][order] // 7) % 3  # deterministic text choice given the time
    theme = tk["theme"][order]
    created = tk["created"][order]
    first = created + tk["resp"][order]
    resolved = first + tk["resolved_after"][order]
    resolved = np.where(tk["unresolved"][order] | (resolved >= EPOCH0 + NDAYS * DAY), -1, resolved)
    ids = _cust_ids(b)
    texts = [V.TICKET_THEMES[t][3 + li][k] for t, k in zip(theme, rng_text, strict=True)]
    chan = ((created // 13) % 4).astype(int)
    return pd.DataFrame({
        "ticket_id": [f"{_tag('T', b)}{i + 1:08d}" for i in range(n)], "cust": tk["owner"][order],
        "user_id": ids[tk["owner"][order]], "created": created, "first": first, "resolved": resolved,
        "category": [V.TICKET_THEMES[t][li] for t in theme], "theme": theme,
        "channel": np.array([c[li] for c in V.TICKET_CHANNELS], dtype=object)[chan],
        "satisfaction": tk["sat"][order], "text": texts,
    })


def _write_tickets(out: Path, t: pd.DataFrame, lang: str, fmt: str) -> tuple[str, int]:
    res = np.where(t["resolved"].to_numpy() < 0, None, _fmt_ts(np.maximum(t["resolved"].to_numpy(), 0)))
    sat = pd.array(t["satisfaction"].to_numpy(), dtype="Int64")
    tab = pa.table({"a": pa.array(t["ticket_id"]), "b": pa.array(t["user_id"]), "c": _fmt_ts(t["created"]),
                    "d": _fmt_ts(t["first"]), "e": pa.array(res, pa.string()), "f": pa.array(t["category"]),
                    "g": pa.array(t["channel"]), "h": pa.array(sat, pa.int64()), "i": pa.array(t["text"])})
    f, _ = _write_table(out, "tickets", tab.rename_columns(TICKET_HEADERS[lang]), fmt)
    return f, tab.num_rows


def _reviews(rng: np.random.Generator, b: dict[str, Any], o: pd.DataFrame, t: pd.DataFrame,
             lang: str) -> pd.DataFrame:
    li = 0 if lang == "zh" else 1
    paid = np.flatnonzero((o["status"].to_numpy() == "paid") & (o["kind"].to_numpy() == 0))
    pick = paid[rng.random(len(paid)) < 0.12]
    when = o["ts"].to_numpy()[pick] + (rng.uniform(2, 15, len(pick)) * DAY).astype(np.int64)
    ok = when < EPOCH0 + NDAYS * DAY
    pick, when = pick[ok], when[ok]
    # reviewed product: the first line of the order
    items_first = b["items"].drop_duplicates("o")
    first_prod = np.zeros(len(b["ts"]), dtype=np.int64)
    first_prod[items_first["o"].to_numpy()] = items_first["prod"].to_numpy()
    prod = first_prod[o["src"].to_numpy()[pick]]
    low_cust = set(t.loc[t["satisfaction"] <= 2, "cust"].tolist())
    penal = np.array([c in low_cust for c in o["cust"].to_numpy()[pick]])
    score = 4.3 + b["products"]["quality"].to_numpy()[prod] - 1.2 * penal + rng.normal(0, 0.9, len(pick))
    rating = np.clip(np.round(score), 1, 5).astype(int)
    k = rng.integers(0, 3, len(pick))
    content = [V.REVIEW_TEXTS[r][li][j] for r, j in zip(rating, k, strict=True)]
    order = np.argsort(when, kind="stable")
    return pd.DataFrame({"review_id": [f"{_tag('R', b)}{i + 1:08d}" for i in range(len(pick))],
                         "user_id": o["user_id"].to_numpy()[pick][order], "review_time": _fmt_ts(when[order]),
                         "product_id": b["products"]["product_id"].to_numpy()[prod][order],
                         "rating": rating[order], "content": np.array(content, dtype=object)[order]})


def _survey(rng: np.random.Generator, b: dict[str, Any], o: pd.DataFrame, t: pd.DataFrame) -> pd.DataFrame:
    buyers = np.unique(o["cust"].to_numpy())
    k = min(len(buyers), max(50, min(50_000, len(buyers) // 12)))
    who = np.sort(rng.choice(buyers, size=k, replace=False))
    seg = b["cu"]["seg"].to_numpy()[who]
    base = np.array([9.0, 7.6, 6.8, 7.2, 6.0])[seg]
    low_cust = np.zeros(len(b["cu"]), dtype=bool)
    low_cust[t.loc[t["satisfaction"] <= 2, "cust"].to_numpy()] = True
    nps = np.clip(np.round(base - 3.0 * low_cust[who] + rng.normal(0, 1.3, k)), 0, 10).astype(int)
    cls = np.where(nps >= 9, "promoter", np.where(nps >= 7, "passive", "detractor"))
    text = [V.SURVEY_TEXTS[c][j] for c, j in zip(cls, rng.integers(0, 3, k), strict=True)]
    when = EPOCH0 + (NDAYS - 90) * DAY + rng.integers(0, 89 * DAY, k)
    order = np.argsort(when, kind="stable")
    return pd.DataFrame({SURVEY_HEADERS[0]: [f"{_tag('Q', b)}{i + 1:07d}" for i in range(k)],
                         SURVEY_HEADERS[1]: _cust_ids(b)[who][order],
                         SURVEY_HEADERS[2]: _fmt_ts(when[order]), SURVEY_HEADERS[3]: nps[order],
                         SURVEY_HEADERS[4]: np.array(text, dtype=object)[order]})


def _spend(rng: np.random.Generator, b: dict[str, Any], o: pd.DataFrame, lang: str) -> tuple[pd.DataFrame, dict]:
    """Daily cost per channel/campaign, budgeted so each paid channel lands near its planned ROI."""
    li = 0 if lang == "zh" else 1
    camp_tag = f" #{b['shard'] + 1}" if b["shard"] else ""  # a later part's campaigns are its own
    paid = o[o["status"] == "paid"]
    day = ((paid["ts"].to_numpy() - EPOCH0) // DAY).astype(int)
    recs = []
    for cz, ce in V.CHANNELS:
        m = paid["channel"].to_numpy() == cz
        rev_d = np.bincount(day[m], weights=paid["amount"].to_numpy()[m], minlength=NDAYS)
        total_rev = rev_d.sum()
        if cz in CHANNEL_ROI:
            shape = 0.6 * rev_d / max(total_rev, 1) + 0.4 / NDAYS
            shape = shape * rng.lognormal(0, 0.15, NDAYS)
            cost_d = shape / shape.sum() * total_rev / CHANNEL_ROI[cz]
        else:
            cost_d = np.zeros(NDAYS)
        sessions = np.maximum(rev_d / 30.0, 5) * rng.lognormal(0, 0.2, NDAYS)
        for camp_z, camp_e, share in CAMPAIGNS[cz]:
            cost = np.round(cost_d * share, 2)
            uv = np.maximum(np.round(sessions * share), 1).astype(np.int64)
            clicks = np.round(uv * rng.uniform(1.1, 1.4, NDAYS)).astype(np.int64)
            imp = np.round(clicks / rng.uniform(0.01, 0.04, NDAYS)).astype(np.int64)
            recs.append(pd.DataFrame({"date": START + np.arange(NDAYS), "channel": cz if li == 0 else ce,
                                      "channel_zh": cz, "campaign": (camp_z if li == 0 else camp_e) + camp_tag,
                                      "impressions": imp, "uv": uv, "clicks": clicks, "cost": cost}))
    spend = pd.concat(recs, ignore_index=True).sort_values(["date", "channel_zh"], kind="stable")
    return spend.reset_index(drop=True), dict(CHANNEL_ROI)


def _write_spend(out: Path, rng: np.random.Generator, spend: pd.DataFrame, dirty: bool, dirt: dict) -> str:
    lang_cols = SPEND_HEADERS["zh"] if spend["channel"].iloc[0] == spend["channel_zh"].iloc[0] else SPEND_HEADERS["en"]
    n = len(spend)
    serial: set[int] = set()
    text: dict[int, str] = {}
    if dirty:
        perm = rng.permutation(n)
        ks, kt = _count(DIRT["spend_excel_serial"], n), _count(DIRT["spend_text_date"], n)
        serial = set(perm[:ks].tolist())
        for r in perm[ks:ks + kt].tolist():
            d = pd.Timestamp(spend["date"].iloc[r])
            text[r] = f"{d.year}/{d.month}/{d.day}"
        dirt["channel_spend"] = {"rows": n, "excel_serial_dates": ks, "text_dates": kt}
    tab = pa.table({lang_cols[0]: pa.array(spend["date"].astype("datetime64[s]")),
                    lang_cols[1]: spend["channel"], lang_cols[2]: spend["campaign"],
                    lang_cols[3]: spend["impressions"], lang_cols[4]: spend["uv"], lang_cols[5]: spend["clicks"],
                    lang_cols[6]: spend["cost"]})
    _write_xlsx(out / "channel_spend.xlsx", tab, date_col=lang_cols[0], serial_rows=serial, text_rows=text)
    return "channel_spend.xlsx"


# ---------------------------------------------------------------- events
def _sessions_for(rng: np.random.Generator, b: dict[str, Any], o_sel: np.ndarray, nb_cust: np.ndarray) -> dict:
    """Sessions behind the orders o_sel (indices into b arrays) plus browse-only sessions of non-buyers."""
    plat = b["platform"][o_sel]
    p1, p2, p3 = (np.array([FUNNEL[p][k] for p in V.PLATFORMS])[plat] for k in range(3))
    f3 = rng.geometric(p3) - 1
    n_co = 1 + f3
    f2 = rng.negative_binomial(n_co, p2)
    n_cart = n_co + f2
    f1 = rng.negative_binomial(n_cart, p1)
    per = 1 + f3 + f2 + f1
    src = np.repeat(np.arange(len(o_sel)), per)
    k = np.arange(len(src)) - np.repeat(np.cumsum(per) - per, per)
    f3r, f2r = np.repeat(f3, per), np.repeat(f2, per)
    stage = np.where(k == 0, 3, np.where(k <= f3r, 2, np.where(k <= f3r + f2r, 1, 0)))
    lost = b["lost"][o_sel][src]
    stage = np.where((stage == 3) & lost, 2, stage)  # the outage: checkout failed
    ots = b["ts"][o_sel][src]
    start = np.where(k == 0, ots, ots - (rng.uniform(0.02, 14, len(src)) * DAY).astype(np.int64))
    cust = b["owner"][o_sel][src]
    chan = np.where(k == 0, b["channel"][o_sel][src], rng.choice(len(V.CHANNELS), size=len(src), p=CHANNEL_MIX))
    order_idx = np.where((k == 0) & ~lost, o_sel[src], -1)
    pl = plat[src]
    # non-buyers browse a little
    nbn = rng.poisson(2.5, len(nb_cust))
    nc = np.repeat(nb_cust, nbn)
    m = len(nc)
    nplat = b["cu"]["pref_platform"].to_numpy()[nc]
    q1, q2 = (np.array([FUNNEL[p][j] for p in V.PLATFORMS])[nplat] for j in range(2))
    nstage = (rng.random(m) < q1).astype(int)
    nstage += (nstage == 1) & (rng.random(m) < q2)
    reg = b["cu"]["reg_ts"].to_numpy()[nc]
    lo = np.maximum(reg, EPOCH0)
    nstart = lo + (rng.random(m) * (EPOCH0 + NDAYS * DAY - lo)).astype(np.int64)
    inside = (k == 0) | (start >= EPOCH0)  # earlier browsing falls before the export window
    return dict(cust=np.concatenate([cust[inside], nc]), platform=np.concatenate([pl[inside], nplat]),
                channel=np.concatenate([chan[inside], rng.choice(len(V.CHANNELS), size=m, p=CHANNEL_MIX)]),
                stage=np.concatenate([stage[inside], nstage]), start=np.concatenate([start[inside], nstart]),
                order_idx=np.concatenate([order_idx[inside], np.full(m, -1)]))


def _write_events(out: Path, rng: np.random.Generator, b: dict[str, Any], fmt: str, dirty: bool, dirt: dict,
                  prog: ProgressFn) -> tuple[str, int, dict]:
    n = len(b["cu"])
    ids = pa.array(_cust_ids(b))
    app_id = b["cu"]["app_id"].to_numpy()
    app_arr = pa.array(np.where(pd.isna(app_id), None, app_id), pa.string())
    anon = pa.array(np.array([f"d{x:012x}" for x in rng.integers(0, 2**48, n)], dtype=object))
    prod_ids = pa.array(b["products"]["product_id"].to_numpy())
    pop = b["products"]["pop"].to_numpy()
    pop = pop / pop.sum()
    first_prod = np.zeros(len(b["ts"]), dtype=np.int64)
    fi = b["items"].drop_duplicates("o")
    first_prod[fi["o"].to_numpy()] = fi["prod"].to_numpy()
    chan_names = pa.array([c[0 if b["lang"] == "zh" else 1] for c in V.CHANNELS])
    plat_names = pa.array(V.PLATFORMS)
    ev_names = pa.array(["login", "search", "view", "click", "add_to_cart", "checkout", "order"])
    order_by_cust = np.argsort(b["owner"], kind="stable")
    owners_sorted = b["owner"][order_by_cust]
    buyers = np.zeros(n, dtype=bool)
    buyers[b["owner"]] = True
    tracked = b["channel"] != [c[0] for c in V.CHANNELS].index("直播")  # live-stream orders happen off-site
    if b.get("tracked_share", 1.0) < 1.0:  # drawn only then, so the default keeps the demo's random stream
        tracked &= rng.random(len(tracked)) < b["tracked_share"]
    funnel = np.zeros((3, 4), dtype=np.int64)
    path = out / ("events.parquet" if fmt == "parquet" else "events.csv")
    writer: Any = None
    ev_counter = 0
    sess_counter = 0
    d = {"rows_before_duplicates": 0, "exact_duplicates": 0, "duration_outlier_100000s": 0, "future_time": 0,
         "negative_duration": 0}
    schema = pa.schema([(h, pa.string()) if h not in ("event_time", "duration") else
                        (h, pa.timestamp("s") if h == "event_time" else pa.int64()) for h in EVENT_HEADERS])
    if fmt != "parquet":
        _write_header(path, EVENT_HEADERS)
        fh = open(path, "ab")  # noqa: SIM115
    for lo in range(0, n, EVENT_CHUNK):
        hi = min(n, lo + EVENT_CHUNK)
        a, z = np.searchsorted(owners_sorted, [lo, hi])
        o_sel = order_by_cust[a:z]
        o_sel = o_sel[tracked[o_sel]]
        nb = np.arange(lo, hi)[~buyers[lo:hi]]
        s = _sessions_for(rng, b, o_sel, nb)
        ns = len(s["cust"])
        np.add.at(funnel, (s["platform"], np.zeros(ns, dtype=int)), 1)
        for st in (1, 2, 3):
            np.add.at(funnel, (s["platform"][s["stage"] >= st], np.full(int((s["stage"] >= st).sum()), st)), 1)
        # events per session: [login] [search] view×v [click] [add_to_cart] [checkout] [order]
        login = (rng.random(ns) < 0.15) & (s["platform"] != 1)
        search = rng.random(ns) < 0.2
        nview = 1 + rng.poisson(0.25, ns)
        click = rng.random(ns) < 0.15
        cnt = login + search + nview + click + (s["stage"] >= 1) + (s["stage"] >= 2) + (s["stage"] >= 3)
        sid = np.repeat(np.arange(ns), cnt)
        k = np.arange(len(sid)) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        lg, sr, nv, cl = login[sid].astype(int), search[sid].astype(int), nview[sid], click[sid].astype(int)
        kind = np.full(len(sid), 2)
        kind[k < lg] = 0
        kind[(k >= lg) & (k < lg + sr)] = 1
        base = lg + sr + nv
        kind[(k >= base) & (k < base + cl)] = 3
        tail = k - base - cl
        kind[tail == 0] = 4
        kind[tail == 1] = 5
        kind[tail == 2] = 6
        gaps = rng.exponential(35.0, len(sid)).astype(np.int64) + 2
        gaps[np.cumsum(cnt) - cnt] = 0
        off = _grouped_cumsum(gaps, np.cumsum(cnt) - cnt, sid)
        # order sessions end exactly at the order time
        last_off = off[np.cumsum(cnt) - 1]
        st0 = np.where(s["order_idx"] >= 0, s["start"] - last_off, s["start"])
        st0 = np.maximum(st0, EPOCH0)
        ets = st0[sid] + off
        ets = np.minimum(ets, EPOCH0 + NDAYS * DAY - 1)
        main = np.where(s["order_idx"] >= 0, first_prod[np.maximum(s["order_idx"], 0)],
                        rng.choice(len(pop), size=ns, p=pop))
        other = rng.choice(len(pop), size=len(sid), p=pop)
        is_first_view = (kind == 2) & (k == lg + sr)
        pid = np.where(is_first_view | (kind >= 4), main[sid], other)
        has_pid = kind >= 2
        dur = np.where(kind == 2, rng.lognormal(3.4, 0.9, len(sid)), rng.uniform(1, 25, len(sid))).astype(np.int64)
        cust = s["cust"][sid]
        web = s["platform"][sid] == 1
        anon_sess = rng.random(ns) < 0.35
        logged = ~(web & anon_sess[sid])
        use_app = ~web & ~pd.isna(app_id[cust])
        order = np.argsort(ets, kind="stable")
        m = len(order)
        uid = pc.if_else(pa.array(use_app[order]), app_arr.take(pa.array(cust[order])), ids.take(pa.array(cust[order])))
        uid = pc.if_else(pa.array(logged[order]), uid, pa.scalar(None, pa.string()))
        pcol = pc.if_else(pa.array(has_pid[order]), prod_ids.take(pa.array(pid[order])), pa.scalar(None, pa.string()))
        ets_o, dur_o = ets[order], dur[order]
        if dirty:
            k_o = _count(DIRT["events_duration_outlier"], m)
            k_f = _count(DIRT["events_future"], m)
            k_n = _count(DIRT["events_negative_duration"], m)
            views = np.flatnonzero(kind[order] == 2)
            pk = rng.choice(views, size=min(len(views), k_o + k_f + k_n), replace=False)
            dur_o = dur_o.copy()
            ets_o = ets_o.copy()
            dur_o[pk[:k_o]] = 100000
            fut = pk[k_o:k_o + k_f]
            ets_o[fut] = FUTURE0 + rng.integers(30, 400, len(fut)) * DAY + ets_o[fut] % DAY
            dur_o[pk[k_o + k_f:]] = -1
            d["duration_outlier_100000s"] += k_o
            d["future_time"] += k_f
            d["negative_duration"] += k_n
        tab = pa.table({
            "event_id": _ids(_tag("E", b), np.arange(ev_counter + 1, ev_counter + m + 1), 12), "user_id": uid,
            "anonymous_id": anon.take(pa.array(cust[order])), "event": ev_names.take(pa.array(kind[order])),
            "event_time": pa.array(ets_o, pa.timestamp("s")),
            "session_id": _ids(_tag("S", b), sess_counter + 1 + sid[order], 11), "product_id": pcol,
            "duration": pa.array(dur_o), "channel": chan_names.take(pa.array(s["channel"][sid][order])),
            "platform": plat_names.take(pa.array(s["platform"][sid][order])),
        }, schema=schema)
        ev_counter += m
        sess_counter += ns
        d["rows_before_duplicates"] += m
        if dirty:
            kd = _count(DIRT["events_dup"], m)
            dup = _pick(rng, m, kd)
            idx = np.sort(np.concatenate([np.arange(m), dup]), kind="stable")
            tab = tab.take(pa.array(idx))
            d["exact_duplicates"] += kd
        if fmt == "parquet":
            if writer is None:
                writer = pq.ParquetWriter(path, schema)
            writer.write_table(tab)
        else:
            pacsv.write_csv(tab, fh, pacsv.WriteOptions(include_header=False, quoting_style="needed"))
        prog("events", hi / n)
    if writer is not None:
        writer.close()
    if fmt != "parquet":
        fh.close()
    total = d["rows_before_duplicates"] + d["exact_duplicates"]
    if dirty:
        d["rows"] = total
        dirt["events"] = d
    return path.name, total, {p: funnel[i].tolist() for i, p in enumerate(V.PLATFORMS)}


def expected_rows(customers: int) -> int:
    """Rough number of event rows for a customer count (for progress messages)."""
    return int(math.ceil(customers * 40))
