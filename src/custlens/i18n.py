"""Message catalog: every string a person reads goes through t(); zh-CN and en are first-class.

Modules register their own messages with register({...}) so catalogs stay next to their code.
"""

from __future__ import annotations

import os
from datetime import date, datetime
from typing import Any

LANGS = ("zh", "en")
_CATALOG: dict[str, dict[str, str]] = {}


def register(messages: dict[str, dict[str, str]]) -> None:
    """Add messages: {key: {"zh": "...", "en": "..."}}. Both languages are required."""
    for key, texts in messages.items():
        missing = [lang for lang in LANGS if lang not in texts]
        if missing:
            raise ValueError(f"message {key!r} lacks translations for {missing}")
        _CATALOG[key] = texts


def normalize_lang(lang: str | None) -> str:
    """Map zh, zh-CN, zh_CN.UTF-8, en, en-US … onto 'zh' or 'en'."""
    if not lang:
        lang = os.environ.get("CUSTLENS_LANG") or ""
    lang = lang.lower()
    if lang.startswith("zh"):
        return "zh"
    if lang.startswith("en"):
        return "en"
    return "en"


def t(key: str, lang: str | None = None, /, **kwargs: Any) -> str:
    """Translate key into lang, formatting it with kwargs; unknown keys come back as the key."""
    lang = normalize_lang(lang)
    texts = _CATALOG.get(key)
    if texts is None:
        return key.format(**kwargs) if kwargs else key
    text = texts[lang]
    return text.format(**kwargs) if kwargs else text


def has(key: str) -> bool:
    return key in _CATALOG


def keys() -> list[str]:
    return sorted(_CATALOG)


def fmt_number(x: float | int | None, lang: str | None = None, digits: int = 0) -> str:
    """Locale-correct number: 1,234,567 in both; zh uses 万/亿 for large values."""
    if x is None:
        return "—"
    lang = normalize_lang(lang)
    if lang == "zh" and abs(x) >= 1e8:
        return f"{x / 1e8:,.2f}亿"
    if lang == "zh" and abs(x) >= 1e4:
        return f"{x / 1e4:,.{max(digits, 1)}f}万"
    return f"{x:,.{digits}f}"


def fmt_money(x: float | None, lang: str | None = None, currency: str = "CNY") -> str:
    """Currency with the sign and grouping each locale expects."""
    if x is None:
        return "—"
    lang = normalize_lang(lang)
    sign = "¥" if currency == "CNY" else "$"
    if lang == "zh":
        return sign + fmt_number(x, lang, 2 if abs(x) < 1e4 else 1)
    return f"{sign}{x:,.2f}"


def fmt_pct(x: float | None, lang: str | None = None, digits: int = 1, signed: bool = False) -> str:
    if x is None:
        return "—"
    s = f"{x * 100:+.{digits}f}%" if signed else f"{x * 100:.{digits}f}%"
    return s


def fmt_date(d: date | datetime | None, lang: str | None = None) -> str:
    if d is None:
        return "—"
    lang = normalize_lang(lang)
    if lang == "zh":
        return f"{d.year}年{d.month}月{d.day}日"
    return d.strftime("%d %b %Y") if isinstance(d, date) else str(d)
