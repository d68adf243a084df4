"""Transforms that protect personal data: normalize, pseudonymize (keyed HMAC), encrypt, mask.

A PII column is stored three ways (see model/schema.py): the masked display form in `<col>`,
a keyed pseudonym in `<col>_pseudo` for linking, and an AES-GCM token in `<col>_enc` for lawful recovery.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import os
import re
import unicodedata
from collections.abc import Sequence
from datetime import date, datetime
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from custlens.errors import KeyMaterialError
from custlens.i18n import register, t
from custlens.privacy.recognizers import (
    COMPOUND_SURNAMES,
    MUNICIPALITIES,
    card_digits,
    cn_mobile_digits,
    country_code,
    find_region,
    is_missing,
)

register({
    "privacy.key.bad": {"zh": "工作区密钥必须是 32 字节，实际为 {n} 字节",
                        "en": "the workspace key must be 32 bytes, got {n}"},
    "privacy.key.fix": {"zh": "使用工作区的 keys/custlens.key（或 CUSTLENS_KEY 环境变量）中的密钥",
                        "en": "use the key from the workspace's keys/custlens.key (or the CUSTLENS_KEY variable)"},
    "privacy.dec.format": {"zh": "加密值格式无法识别（应为 v1:<密钥编号>:<base64>）",
                           "en": "the encrypted value is not in a known format (expected v1:<key id>:<base64>)"},
    "privacy.dec.format_fix": {"zh": "确认读取的是 *_enc 列，且该值未被截断或修改",
                               "en": "make sure you are reading an *_enc column and the value was not cut or edited"},
    "privacy.dec.wrong_key": {"zh": "该值由另一把密钥加密（密钥编号 {kid}，当前密钥编号 {have}）",
                              "en": "this value was encrypted with a different key (key id {kid}; current key id {have})"},
    "privacy.dec.wrong_key_fix": {"zh": "使用加密时的工作区密钥（从备份恢复 keys/custlens.key 或设置 CUSTLENS_KEY）",
                                  "en": "use the workspace key it was encrypted with (restore keys/custlens.key "
                                        "from backup or set CUSTLENS_KEY)"},
    "privacy.dec.corrupt": {"zh": "加密值校验失败：密钥错误或数据已损坏",
                            "en": "the encrypted value failed authentication: wrong key or corrupted data"},
    "privacy.dec.corrupt_fix": {"zh": "从备份恢复该值或正确的密钥；不会返回无法验证的明文",
                                "en": "restore the value or the right key from backup; unauthenticated plaintext "
                                      "is never returned"},
})

ENC_INFO = b"custlens-enc-v1"
ENC_PREFIX = "v1"
_WS = re.compile(r"\s+")


# ----------------------------------------------------------------------------------------------
# Normalization and pseudonyms
# ----------------------------------------------------------------------------------------------

def _phone_norm(v: str) -> str:
    cn = cn_mobile_digits(v)
    if cn:
        return cn
    digits = re.sub(r"\D", "", v)
    if v.lstrip().startswith("+"):
        return "+" + digits
    if digits.startswith("00") and len(digits) > 9:
        return "+" + digits[2:]
    return digits


def normalize(value: object, kind: str) -> str:
    """Canonical form of a value before hashing, so one person's phone/email matches across sources."""
    v = unicodedata.normalize("NFKC", str(value)).strip()
    if kind in ("phone", "intl_phone"):
        return _phone_norm(v)
    if kind == "email":
        return v.lower()
    if kind == "id_number":
        return v.replace(" ", "").upper()
    if kind == "bank_card":
        return re.sub(r"\D", "", v)
    if kind == "ip":
        try:
            return ipaddress.ip_address(v).compressed
        except ValueError:
            return v.lower()
    if kind == "name":
        return _WS.sub("", v) if re.search(r"[\u4e00-\u9fff]", v) else _WS.sub(" ", v).lower()
    return _WS.sub(" ", v)


def _ns(kind: str) -> str:
    # One namespace for CN and international phones so the same number links across columns.
    return "phone" if kind == "intl_phone" else kind


def _check_key(key: bytes) -> None:
    if not isinstance(key, (bytes, bytearray)) or len(key) != 32:
        n = len(key) if isinstance(key, (bytes, bytearray)) else 0
        raise KeyMaterialError(t("privacy.key.bad", None, n=n), fix=t("privacy.key.fix"))


def pseudonymize(value: object, key: bytes, kind: str) -> str:
    """Keyed HMAC-SHA256 (hex) of f"{kind}:{normalize(value)}": stable per person, useless without the key."""
    _check_key(key)
    msg = f"{_ns(kind)}:{normalize(value, kind)}".encode()
    return hmac.digest(bytes(key), msg, "sha256").hex()


# ----------------------------------------------------------------------------------------------
# Encryption
# ----------------------------------------------------------------------------------------------

@lru_cache(maxsize=16)
def _enc_key(key: bytes) -> tuple[AESGCM, str]:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=ENC_INFO).derive(key)
    kid = hashlib.sha256(derived).hexdigest()[:8]
    return AESGCM(derived), kid


def key_id(key: bytes) -> str:
    """The id (8 hex) of the encryption key derived from a workspace key, as written into tokens."""
    _check_key(key)
    return _enc_key(bytes(key))[1]


def _seal(aead: AESGCM, kid: str, nonce: bytes, value: str) -> str:
    ct = aead.encrypt(nonce, value.encode("utf-8"), kid.encode())
    return f"{ENC_PREFIX}:{kid}:" + base64.b64encode(nonce + ct).decode("ascii")


def encrypt(value: str, key: bytes) -> str:
    """AES-256-GCM with an HKDF-derived key and a random nonce → "v1:<kid>:<base64(nonce+ciphertext)>"."""
    _check_key(key)
    aead, kid = _enc_key(bytes(key))
    return _seal(aead, kid, os.urandom(12), str(value))


def token_key_id(token: str) -> str | None:
    """The key id written in an encrypted token (for key rotation), or None if it is not a token."""
    parts = str(token).split(":", 2)
    return parts[1] if len(parts) == 3 and parts[0] == ENC_PREFIX else None


def decrypt(token: str, key: bytes) -> str:
    """Plaintext of an encrypt() token; a wrong key or a corrupt token raises KeyMaterialError."""
    _check_key(key)
    aead, have = _enc_key(bytes(key))
    parts = str(token).split(":", 2)
    if len(parts) != 3 or parts[0] != ENC_PREFIX or not re.fullmatch(r"[0-9a-f]{8}", parts[1]):
        raise KeyMaterialError(t("privacy.dec.format"), fix=t("privacy.dec.format_fix"))
    kid, b64 = parts[1], parts[2]
    if kid != have:
        raise KeyMaterialError(t("privacy.dec.wrong_key", None, kid=kid, have=have), fix=t("privacy.dec.wrong_key_fix"))
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise KeyMaterialError(t("privacy.dec.format"), fix=t("privacy.dec.format_fix")) from None
    if len(raw) < 12 + 16:
        raise KeyMaterialError(t("privacy.dec.corrupt"), fix=t("privacy.dec.corrupt_fix"))
    try:
        plain = aead.decrypt(raw[:12], raw[12:], kid.encode())
        return plain.decode("utf-8")
    except (InvalidTag, UnicodeDecodeError):
        raise KeyMaterialError(t("privacy.dec.corrupt"), fix=t("privacy.dec.corrupt_fix")) from None


# ----------------------------------------------------------------------------------------------
# Masking (display forms)
# ----------------------------------------------------------------------------------------------

def redact(value: object) -> str:
    """Fully hidden, length not revealed."""
    return "***"


def mask_last4(value: object) -> str:
    """Stars then the last 4 characters (all stars when the value is 4 characters or shorter)."""
    v = str(value).strip()
    if len(v) <= 4:
        return "*" * len(v) if v else ""
    return "*" * (len(v) - 4) + v[-4:]


def mask_first3_last4(value: object) -> str:
    """First 3 and last 4 characters kept, the middle starred (short values keep only the last 4)."""
    v = str(value).strip()
    if len(v) <= 8:
        return mask_last4(v)
    return v[:3] + "*" * (len(v) - 7) + v[-4:]


def year_only(value: object) -> str | None:
    """Just the year of a date (1990-05-01 → "1990"), generalizing a birth date."""
    if value is None:
        return None
    if isinstance(value, (date, datetime)):
        return f"{value.year:04d}"
    m = re.match(r"\s*(\d{4})", str(value))
    if m:
        return m.group(1)
    return redact(value)


def _mask_phone(v: str) -> str:
    cn = cn_mobile_digits(v)
    if cn:
        return cn[:3] + "****" + cn[-4:]
    return _mask_intl(v)


def _mask_intl(v: str) -> str:
    digits = re.sub(r"\D", "", v)
    if v.strip().startswith("+") and len(digits) >= 8:
        cc = country_code(digits)
        return f"+{cc} " + "*" * (len(digits) - len(cc) - 4) + digits[-4:]
    return mask_last4(digits) if len(digits) >= 7 else redact(v)


def _mask_id(v: str) -> str:
    s = v.replace(" ", "").upper()
    if len(s) < 12:
        return mask_last4(s)
    return s[:4] + "*" * (len(s) - 8) + s[-4:]


def _mask_card(v: str) -> str:
    d = card_digits(v) or re.sub(r"\D", "", v)
    if len(d) < 13:
        return mask_last4(d) if d else redact(v)
    return d[:6] + "*" * (len(d) - 10) + d[-4:]


def _mask_email(v: str) -> str:
    s = v.strip().lower()
    local, at, domain = s.rpartition("@")
    if not at or not local:
        return redact(v)
    return local[0] + "***@" + domain


def _mask_name(v: str) -> str:
    s = _WS.sub("", v) if re.search(r"[\u4e00-\u9fff]", v) else v.strip()
    if not s:
        return ""
    keep = 2 if s[:2] in COMPOUND_SURNAMES and len(s) > 2 else 1
    return s[:keep] + "".join(" " if c == " " else "*" for c in s[keep:])


def _mask_address(v: str) -> str:
    province, city = find_region(v)
    if not province:
        return redact(v)
    if city is None or (province in MUNICIPALITIES and city == province):
        return province
    return f"{province} {city}"


def _mask_ip(v: str) -> str:
    try:
        ip = ipaddress.ip_address(v.strip())
    except ValueError:
        return redact(v)
    if ip.version == 4:
        a, b, _, _ = str(ip).split(".")
        return f"{a}.{b}.*.*"
    groups = ip.exploded.split(":")
    return ":".join([groups[0].lstrip("0") or "0", groups[1].lstrip("0") or "0"] + ["*"] * 6)


_MASKERS = {
    "phone": _mask_phone,
    "intl_phone": _mask_intl,
    "id_number": _mask_id,
    "bank_card": _mask_card,
    "email": _mask_email,
    "name": _mask_name,
    "address": _mask_address,
    "ip": _mask_ip,
    "last4": mask_last4,
    "first3_last4": mask_first3_last4,
    "redact": redact,
    "year_only": year_only,
}
MASK_KINDS = tuple(_MASKERS)


def mask(value: object, kind: str) -> str:
    """Display form of a value (138****1234, 4403**********1234, a***@example.com, 张*, 广东 深圳, …)."""
    if is_missing(value):
        return ""
    fn = _MASKERS.get(kind, mask_first3_last4)
    return fn(unicodedata.normalize("NFKC", str(value)))  # type: ignore[no-any-return]


# ----------------------------------------------------------------------------------------------
# Vectorized protection
# ----------------------------------------------------------------------------------------------

def protect_values(values: Sequence[str | None], kind: str, key: bytes, enc_key: bytes | None = None,
                   ) -> tuple[list[str | None], list[str | None], list[str | None]]:
    """(display, pseudo, enc) for each value; None (and NaN/NA) stay None. Keys are derived once.

    `key` makes the pseudonyms; `enc_key` (default: the same key) encrypts — separate after a key rotation.
    """
    _check_key(key)
    k = bytes(key)
    aead, kid = _enc_key(bytes(enc_key) if enc_key is not None else k)
    masker = _MASKERS.get(kind, mask_first3_last4)
    ns = _ns(kind)
    digest = hmac.digest
    n = len(values)
    nonces = os.urandom(12 * n) if n else b""
    display: list[str | None] = [None] * n
    pseudo: list[str | None] = [None] * n
    enc: list[str | None] = [None] * n
    cache: dict[str, tuple[str, str]] = {}
    for i, raw in enumerate(values):
        if is_missing(raw):
            continue
        v = str(raw)
        hit = cache.get(v)
        if hit is None:
            vn = unicodedata.normalize("NFKC", v)
            hit = (masker(vn), digest(k, f"{ns}:{normalize(vn, kind)}".encode(), "sha256").hex())
            if len(cache) < 200_000:
                cache[v] = hit
        display[i], pseudo[i] = hit
        enc[i] = _seal(aead, kid, nonces[12 * i:12 * i + 12], v)
    return display, pseudo, enc
