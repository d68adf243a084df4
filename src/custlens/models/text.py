"""Text analytics for tickets and reviews: lexicon sentiment (zh via jieba, en), TF-IDF keywords, complaint themes.

Everything runs offline: the lexicons, modifiers, stopwords and theme keywords are small files in models/data/
and jieba uses its bundled dictionary. Texts are streamed from the engine in Arrow batches and scored in Python.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from custlens.cli_common import Format
from custlens.errors import DataError, ValidationError
from custlens.i18n import register, t
from custlens.results import Result

if TYPE_CHECKING:
    import ibis.expr.types as ir
    import typer

DATA = Path(__file__).parent / "data"
LANGS = ("auto", "zh", "en")
LABELS = ("positive", "neutral", "negative")
TEXT_SOURCES = ("tickets", "feedback")
BY = ("category", "product_id", "segment")
THEMES = ("logistics", "quality", "refund", "service", "price", "packaging", "description")
NEUTRAL_BAND = 0.2  # |score| below this is neutral
WINDOW = {"zh": 4, "en": 3}  # tokens before a sentiment word searched for negators and degree adverbs

register({
    "text.theme.logistics": {"zh": "物流/配送", "en": "logistics/delivery"},
    "text.theme.quality": {"zh": "质量", "en": "quality"},
    "text.theme.refund": {"zh": "退款/售后", "en": "refund/after-sales"},
    "text.theme.service": {"zh": "客服态度", "en": "service attitude"},
    "text.theme.price": {"zh": "价格", "en": "price"},
    "text.theme.packaging": {"zh": "包装", "en": "packaging"},
    "text.theme.description": {"zh": "与描述不符/尺码", "en": "not as described/size"},
    "text.label.positive": {"zh": "正面", "en": "positive"},
    "text.label.neutral": {"zh": "中性", "en": "neutral"},
    "text.label.negative": {"zh": "负面", "en": "negative"},
    "text.unknown": {"zh": "未知", "en": "unknown"},
    "text.err.param": {"zh": "参数 {name} 的取值 {value!r} 无效", "en": "invalid value {value!r} for {name}"},
    "text.err.param.fix": {"zh": "请使用：{allowed}", "en": "use {allowed}"},
    "text.err.by": {"zh": "{source} 不能按 {by} 分组", "en": "{source} cannot be grouped by {by}"},
    "text.err.by.fix": {"zh": "工单按 category 或 segment 分组；评价按 category、product_id 或 segment 分组",
                        "en": "group tickets by category or segment; feedback by category, product_id or segment"},
    "text.err.empty": {"zh": "{source} 中没有可分析的文本", "en": "no texts to analyse in {source}"},
    "text.err.empty.fix": {"zh": "导入带 text 列的工单（tickets）或评价（feedback）",
                           "en": "load tickets or feedback with a text column (`custlens ingest`)"},
    "text.err.segment": {"zh": "客户画像中没有分群列 segment8", "en": "the customer profile has no segment8 column"},
    "text.err.segment.fix": {"zh": "先运行 `custlens profile build`（需要订单数据以计算 RFM）",
                             "en": "run `custlens profile build` first (RFM needs orders)"},
    "text.err.labels": {"zh": "标注数据需要 text 与 label 两列，label 取 positive/neutral/negative",
                        "en": "labelled data needs text and label columns with positive/neutral/negative"},
    "text.err.labels.fix": {"zh": "检查文件表头和标签取值", "en": "check the header and the label values"},
    "text.col.group": {"zh": "分组", "en": "group"},
    "text.col.share": {"zh": "占比", "en": "share"},
    "text.col.label": {"zh": "情感", "en": "sentiment"},
    "text.chart.title": {"zh": "各分组情感占比", "en": "Sentiment share by group"},
    "text.cli.groups": {"zh": "{source} 情感与投诉主题（按 {by}，共 {n} 条文本）",
                        "en": "{source}: sentiment and complaint themes by {by} ({n} texts)"},
    "text.cli.themes": {"zh": "投诉主题", "en": "Complaint themes"},
    "text.cli.keywords": {"zh": "关键词（TF-IDF）", "en": "Keywords (TF-IDF)"},
    "text.cli.written": {"zh": "已为 {n} 位客户写入画像列 avg_sentiment",
                         "en": "Wrote avg_sentiment into the profile for {n} customers"},
})


def _bad(name: str, value: Any, allowed: tuple[str, ...]) -> ValidationError:
    return ValidationError(t("text.err.param", None, name=name, value=value), where=name,
                           fix=t("text.err.param.fix", None, allowed=" | ".join(allowed)))


def _check(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise _bad(name, value, allowed)


# ----------------------------------------------------------------------------------------------------------
# resources (small text files shipped with the package)
# ----------------------------------------------------------------------------------------------------------
def _rows(name: str) -> list[list[str]]:
    out = []
    for line in (DATA / name).read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            out.append([p.strip() for p in line.split("\t")])
    return out


@cache
def lexicon(lang: str) -> dict[str, float]:
    """Sentiment words (and multi-word phrases in English) → polarity in [-2, 2]."""
    return {r[0]: float(r[1]) for r in _rows(f"sentiment_{lang}.txt")}


@cache
def modifiers(lang: str) -> tuple[dict[str, float], dict[str, float]]:
    """(negators → weight, degree adverbs → multiplier)."""
    neg, deg = {}, {}
    for word, kind, value in _rows(f"modifiers_{lang}.txt"):
        (neg if kind == "neg" else deg)[word] = float(value)
    return neg, deg


@cache
def stopwords(lang: str) -> frozenset[str]:
    return frozenset(r[0] for r in _rows(f"stopwords_{lang}.txt"))


@cache
def theme_keywords() -> dict[str, list[tuple[str, str]]]:
    """lang → [(theme, keyword)]; zh keywords match as substrings, en keywords as word prefixes."""
    out: dict[str, list[tuple[str, str]]] = {"zh": [], "en": []}
    for theme, lang, kw in _rows("themes.txt"):
        out[lang].append((theme, kw.lower()))
    return out


@lru_cache(maxsize=1)
def _jieba() -> Any:
    """A private jieba tokenizer (bundled dictionary) that also knows the lexicon's words."""
    import jieba  # noqa: PLC0415

    jieba.setLogLevel(logging.WARNING)
    tok = jieba.Tokenizer()
    tok.initialize()
    neg, deg = modifiers("zh")
    for w in [*lexicon("zh"), *neg, *deg]:
        if len(w) > 1 and w not in tok.FREQ:
            tok.add_word(w, freq=tok.suggest_freq(w, tune=False))  # high enough to be cut whole (没收到, not 没收/到)
    return tok


_CJK = re.compile(r"[\u3400-\u9fff]")
_LATIN = re.compile(r"[A-Za-z]")
_ZH_SPLIT = re.compile(r"[，。！？!?,.;；:：\n\r~～…、（）()\[\]【】\s]+")
_EN_CLAUSE = re.compile(r"[.!?;:,\n]+")
_EN_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
ZH_CONTRAST = ("但是", "但", "不过", "可是", "然而", "只是", "就是")
EN_CONTRAST = ("but", "however", "yet")
FILLERS = {
    "zh": frozenset(("是", "都", "也", "再", "会", "能", "算", "得", "的", "了", "这么", "那么", "那样", "这样", "还", "就", "任何", "什么")),
    "en": frozenset(("the", "a", "an", "be", "been", "is", "was", "are", "were", "at", "all", "any", "so", "that",
                     "it", "this", "that", "as", "very", "too", "really")),
}
ZH_PARTICLES = ("了", "的", "啊", "呀", "啦", "哦", "呢", "吧")
ZH_POST_WEAK = ("点", "一点", "一些", "些", "一点点")
ZH_POST_STRONG = ("极了", "死了", "透了", "爆了")


def detect_lang(text: str) -> str:
    """'zh' when CJK characters make up at least 30% of the letters, else 'en'."""
    cjk = len(_CJK.findall(text))
    latin = len(_LATIN.findall(text))
    return "zh" if cjk and cjk >= 0.3 * (cjk + latin / 4) else "en"


# ----------------------------------------------------------------------------------------------------------
# tokenization
# ----------------------------------------------------------------------------------------------------------
@cache
def _zh_vocab() -> tuple[frozenset[str], dict[str, tuple[str, ...]]]:
    """The words tokens_zh keeps whole (lexicon, negators, degree words) and the negator/degree prefixes by
    their first character, longest first (built once: it was rebuilt for every text)."""
    neg, deg = modifiers("zh")
    vocab = frozenset(lexicon("zh")) | frozenset(neg) | frozenset(deg)
    by_first: dict[str, list[str]] = {}
    for p in sorted(set(neg) | set(deg), key=len, reverse=True):
        by_first.setdefault(p[0], []).append(p)
    return vocab, {c: tuple(ps) for c, ps in by_first.items()}


def _split_zh_token(tok: str, vocab: frozenset[str], prefixes: dict[str, tuple[str, ...]]) -> list[str]:
    """Split an unknown token starting with a negator/degree prefix (很满意 → 很 满意; 不太好用 → 不太 好用).

    `prefixes` maps a first character to the prefixes starting with it, longest first: the same prefixes,
    in the same order, as trying every prefix longest first (the others cannot match)."""
    for p in prefixes.get(tok[:1], ()):
        if tok.startswith(p) and len(tok) > len(p):
            rest = tok[len(p):]
            if rest in vocab:
                return [p, rest]
            sub = _split_zh_token(rest, vocab, prefixes)
            if len(sub) > 1:
                return [p, *sub]
    for part in ZH_PARTICLES:  # 坏了, 好的 …
        if tok.endswith(part) and tok[:-1] in vocab:
            return [tok[:-1], part]
    return [tok]


def tokens_zh(text: str) -> list[list[str]]:
    """Clauses of jieba tokens, with negator/degree prefixes split off lexicon words."""
    tok = _jieba()
    vocab, prefixes = _zh_vocab()
    out = []
    for clause in _ZH_SPLIT.split(text):
        if not clause:
            continue
        words: list[str] = []
        for w in tok.lcut(clause, HMM=True):
            w = w.strip()
            if not w:
                continue
            words.extend([w] if w in vocab else _split_zh_token(w, vocab, prefixes))
        out.extend(_split_contrast(words, ZH_CONTRAST))
    return out


@cache
def _en_phrases() -> tuple[str, ...]:
    """Multi-word lexicon entries, longest first."""
    return tuple(sorted((p for p in lexicon("en") if " " in p), key=len, reverse=True))


def tokens_en(text: str) -> list[list[str]]:
    """Clauses of lower-case words; multi-word lexicon phrases joined into one token."""
    phrases = _en_phrases()
    out = []
    for clause in _EN_CLAUSE.split(text.lower().replace("\u2019", "'")):
        words = _EN_WORD.findall(clause)
        if not words:
            continue
        joined = " " + " ".join(words) + " "
        for p in phrases:
            if f" {p} " in joined:
                joined = joined.replace(f" {p} ", " " + p.replace(" ", "_") + " ")
        out.extend(_split_contrast([w.replace("_", " ") for w in joined.split()], EN_CONTRAST))
    return out


def _split_contrast(words: list[str], contrast: tuple[str, ...]) -> list[list[str]]:
    """Start a new clause at each contrast word (但是, but) so the clauses can be weighted."""
    out: list[list[str]] = []
    cur: list[str] = []
    for w in words:
        if w in contrast and cur:
            out.append(cur)
            cur = []
        cur.append(w)
    if cur:
        out.append(cur)
    return out


# ----------------------------------------------------------------------------------------------------------
# sentiment
# ----------------------------------------------------------------------------------------------------------
def _clause_score(words: list[str], lang: str) -> float:
    lex = lexicon(lang)
    neg, deg = modifiers(lang)
    total = 0.0
    n = len(words)
    for i, w in enumerate(words):
        if w not in lex:
            continue
        # a word that is also a modifier (好 "very", pretty, never) modifies a sentiment word right after it
        if (w in neg or w in deg) and any(words[j] in lex for j in range(i + 1, min(n, i + 1 + WINDOW[lang]))):
            continue
        p = lex[w]
        mult = 1.0
        negated = False
        skipped = 0
        for j in range(i - 1, max(-1, i - 1 - WINDOW[lang]), -1):
            m = words[j]
            if m in lex and not (m in neg or m in deg):
                break
            if m not in neg and m not in deg and m not in FILLERS[lang]:
                skipped += 1  # negation does not reach across a verb phrase (没遇到过这么差 stays negative)
                if skipped > 1:
                    break
                continue
            if m in neg:
                # negated positive → negative; negated negative → mildly positive ("not bad", 没问题)
                mult *= neg[m] * (0.6 if p < 0 else 0.9)
                negated = not negated
            elif m in deg:
                if lang == "zh" and m in ("一点", "有点") and j + 1 < i and words[j + 1] in ("都", "也"):
                    mult *= 1.5  # 一点都不好 / 一点也不差: emphasis, not "a little"
                else:
                    mult *= deg[m]
        if lang == "zh":
            after = [x for x in words[i + 1:i + 3] if x != "了"]
            if after and after[0] in ZH_POST_WEAK:
                mult *= 0.6
            elif after and after[0] in ZH_POST_STRONG:
                mult *= 1.8
        total += p * mult
    return total


def _contrast(words: list[str], lang: str) -> bool:
    return bool(words) and words[0] in (ZH_CONTRAST if lang == "zh" else EN_CONTRAST)


def score_text(text: str | None, lang: str = "auto") -> tuple[float, str]:
    """Sentiment of one text in [-1, 1] and the language used; clauses after 但是/but weigh more."""
    if text is None or (isinstance(text, float) and math.isnan(text)) or not str(text).strip():
        return 0.0, "en" if lang == "auto" else lang
    text = str(text)
    lang = detect_lang(text) if lang == "auto" else lang
    return _score_clauses(_clauses(text, lang), lang), lang


def _clauses(text: str, lang: str) -> list[list[str]]:
    return tokens_zh(text) if lang == "zh" else tokens_en(text)


def _score_clauses(clauses: list[list[str]], lang: str) -> float:
    """score_text's score from the text's clauses."""
    scores = [_clause_score(c, lang) for c in clauses]
    for k, c in enumerate(clauses):
        if _contrast(c, lang) and k > 0:
            for j in range(k):
                scores[j] *= 0.5
            scores[k] *= 1.5
        elif lang == "en" and c and c[0] in ("although", "though") and k + 1 < len(clauses):
            scores[k] *= 0.5
    total = sum(scores)
    return float(math.tanh(total / 2.0))


def label_of(score: float, band: float = NEUTRAL_BAND) -> str:
    return "positive" if score >= band else "negative" if score <= -band else "neutral"


class SentimentAnalyzer:
    """Lexicon sentiment with negation and degree handling; fit() is a no-op kept for the scikit-learn contract."""

    def __init__(self, lang: str = "auto", neutral_band: float = NEUTRAL_BAND) -> None:
        self.lang = lang
        self.neutral_band = neutral_band

    def fit(self, texts: Any = None, y: Any = None) -> SentimentAnalyzer:
        _check("lang", self.lang, LANGS)
        self.lexicon_size_ = {lang: len(lexicon(lang)) for lang in ("zh", "en")}
        return self

    def score(self, texts: Any) -> np.ndarray:
        """Scores in [-1, 1]."""
        _check("lang", self.lang, LANGS)
        return np.array([score_text(x, self.lang)[0] for x in texts], dtype=float)

    def predict(self, texts: Any) -> np.ndarray:
        """Labels positive / neutral / negative."""
        return np.array([label_of(s, self.neutral_band) for s in self.score(texts)], dtype=object)


def sentiment(texts: Any, lang: str = "auto") -> pd.DataFrame:
    """One row per text: score in [-1, 1], label (positive/neutral/negative) and the language used."""
    _check("lang", lang, LANGS)
    if isinstance(texts, str):
        texts = [texts]
    rows = [score_text(x, lang) for x in texts]
    return pd.DataFrame({"score": [r[0] for r in rows], "label": [label_of(r[0]) for r in rows],
                         "lang": [r[1] for r in rows]})


def evaluate_sentiment(labelled: Any, lang: str = "auto") -> dict[str, Any]:
    """Accuracy, macro-F1 and the confusion matrix on a labelled frame or CSV (columns text, label)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score  # noqa: PLC0415

    df = pd.read_csv(labelled) if isinstance(labelled, (str, Path)) else pd.DataFrame(labelled)
    if not {"text", "label"} <= set(df.columns) or not set(df["label"]) <= set(LABELS):
        raise ValidationError(t("text.err.labels"), where=str(labelled) if isinstance(labelled, (str, Path))
                              else "frame", fix=t("text.err.labels.fix"))
    pred = sentiment(df["text"].tolist(), lang)["label"]
    y = df["label"].to_numpy()
    cm = confusion_matrix(y, pred, labels=list(LABELS))
    wrong = df.assign(pred=pred.to_numpy())
    return {"n": len(df), "accuracy": float(accuracy_score(y, pred)),
            "macro_f1": float(f1_score(y, pred, labels=list(LABELS), average="macro", zero_division=0)),
            "labels": list(LABELS), "confusion": cm.tolist(),
            "errors": wrong[wrong["label"] != wrong["pred"]][["text", "label", "pred"]].to_dict("records")}


# ----------------------------------------------------------------------------------------------------------
# keywords and themes
# ----------------------------------------------------------------------------------------------------------
def content_tokens(text: str, lang: str = "auto") -> list[str]:
    """Tokens worth counting as keywords: stopwords, digits, punctuation and single letters removed."""
    if not isinstance(text, str) or not text.strip():
        return []
    lang = detect_lang(text) if lang == "auto" else lang
    return _content(_clauses(text, lang), lang)


def _content(clauses: list[list[str]], lang: str) -> list[str]:
    """content_tokens from the text's clauses."""
    stop = stopwords(lang)
    words = [w for c in clauses for w in c]
    if lang == "zh":
        neg, deg = modifiers("zh")
        return [w for w in words if w not in stop and w not in neg and w not in deg and _CJK.search(w)
                and (len(w) > 1 or w in lexicon("zh"))]
    neg, _ = modifiers("en")
    return [w for w in words if w not in stop and w not in neg and len(w) > 2]


def keywords(texts: Any, top: int = 10, lang: str = "auto", *, tokens: dict[str, list[str]] | None = None
             ) -> pd.DataFrame:
    """Top terms by mean TF-IDF over the texts (term, score, docs); `tokens` as for _tfidf_top."""
    return _tfidf_top({"all": list(texts)}, top, lang, tokens).drop(columns=["group"])


def _tfidf_top(groups: dict[str, list[str]], top: int, lang: str,
               tokens: dict[str, list[str]] | None = None) -> pd.DataFrame:
    """Per group, its top terms by TF-IDF (terms are weighted within the group against all texts' IDF).
    `tokens` holds texts' content tokens already computed (score_rows(..., tokens=))."""
    from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: PLC0415

    docs, owners = [], []
    known = tokens or {}
    for g, texts in groups.items():
        for x in texts:
            d = known.get(x) if isinstance(x, str) else None
            docs.append(d if d is not None else content_tokens(x, lang))
            owners.append(g)
    cols = ["group", "term", "score", "docs"]
    if not any(docs):
        return pd.DataFrame(columns=cols)
    vec = TfidfVectorizer(analyzer=lambda d: d, sublinear_tf=True)
    m = vec.fit_transform(docs)
    terms = np.array(vec.get_feature_names_out())
    owners_a = np.array(owners, dtype=object)
    rows = []
    for g in groups:
        sel = np.flatnonzero(owners_a == g)
        if not len(sel):
            continue
        sub = m[sel]
        mean = np.asarray(sub.mean(axis=0)).ravel()
        df_ = np.asarray((sub > 0).sum(axis=0)).ravel()
        order = np.lexsort((terms, -mean))[:top]
        rows += [(g, str(terms[i]), float(mean[i]), int(df_[i])) for i in order if mean[i] > 0]
    return pd.DataFrame(rows, columns=cols)


def themes_of(text: str, lang: str = "auto") -> list[str]:
    """Complaint themes a text mentions (keyword → theme map), in THEMES order."""
    if not isinstance(text, str) or not text.strip():
        return []
    lang = detect_lang(text) if lang == "auto" else lang
    low = text.lower()
    found = set()
    for theme, kw in theme_keywords()[lang]:
        if theme in found:
            continue
        if lang == "zh":
            if kw in low:
                found.add(theme)
        elif re.search(r"\b" + re.escape(kw), low):
            found.add(theme)
    return [th for th in THEMES if th in found]


# ----------------------------------------------------------------------------------------------------------
# workspace analysis
# ----------------------------------------------------------------------------------------------------------
def _person_map(ws: Any, tbl: ir.Table) -> ir.Table:
    """Replace user_id by the stitched person_id (as in customer_profile) when identity_map exists."""
    import ibis  # noqa: PLC0415

    if ws.has_table("identity_map") and ws.row_count("identity_map"):
        idm = ws.table("identity_map").select(m_uid=lambda x: x.user_id.cast("string"),
                                              m_pid=lambda x: x.person_id.cast("string"))
        j = tbl.left_join(idm, tbl.user_id == idm.m_uid)
        return j.mutate(user_id=ibis.coalesce(j.m_pid, j.user_id)).drop("m_uid", "m_pid")
    return tbl


def text_rows(ws: Any, source: str = "tickets", by: str | None = "category") -> ir.Table:
    """(id, user_id, grp, text) rows with non-empty text; grp per `by` (unknown when missing)."""
    import ibis  # noqa: PLC0415

    _check("source", source, TEXT_SOURCES)
    if by is not None:
        _check("by", by, BY)
    tbl = ws.table(source)
    key = "ticket_id" if source == "tickets" else "feedback_id"
    base = tbl.filter(tbl.text.notnull() & (tbl.text.strip() != ""))
    base = base.select(id=base[key].cast("string"), user_id=base.user_id.cast("string"), text=base.text,
                       product_id=(base.product_id.cast("string") if "product_id" in base.columns
                                   else ibis.null().cast("string")),
                       category=(base.category.cast("string") if "category" in base.columns
                                 else ibis.null().cast("string")))
    base = _person_map(ws, base)
    unknown = ibis.literal(t("text.unknown"))
    if by is None:
        grp = unknown
    elif by == "product_id":
        if source == "tickets":
            raise ValidationError(t("text.err.by", None, source=source, by=by), where="by", fix=t("text.err.by.fix"))
        grp = base.product_id
    elif by == "category" and source == "feedback":
        p = ws.table("products")
        cat = p.select(c_pid=p.product_id.cast("string"), c_cat=p.category.cast("string")).distinct(on="c_pid")
        base = base.left_join(cat, base.product_id == cat.c_pid).drop("c_pid")
        base = base.mutate(category=base.c_cat).drop("c_cat")
        grp = base.category
    elif by == "category":
        grp = base.category
    else:
        if not ws.has_table("customer_profile") or "segment8" not in ws.table("customer_profile").columns:
            raise DataError(t("text.err.segment"), where="customer_profile", fix=t("text.err.segment.fix"))
        prof = ws.table("customer_profile")
        seg = prof.select(s_uid=prof.user_id.cast("string"), s_seg=prof.segment8.cast("string"))
        base = base.left_join(seg, base.user_id == seg.s_uid).drop("s_uid")
        grp = base.s_seg
    base = base.mutate(grp=ibis.coalesce(grp, unknown))
    return base.select("id", "user_id", "grp", "text")


def score_rows(rows: ir.Table, lang: str = "auto", batch_size: int = 50_000,
               tokens: dict[str, list[str]] | None = None) -> pd.DataFrame:
    """Score texts streamed from the engine in Arrow batches: id, user_id, grp, score, label, lang, themes.

    With a `tokens` dict, each distinct text is tokenized once for both its score and its content tokens
    (kept in `tokens` for the keyword TF-IDF), and a text seen before is not scored again."""
    parts = []
    seen: dict[str, tuple[float, str]] = {}

    def one(x: Any) -> tuple[float, str]:
        if tokens is None or not isinstance(x, str) or not x.strip():
            return score_text(x, lang)
        hit = seen.get(x)
        if hit is None:
            lg = detect_lang(x) if lang == "auto" else lang
            cl = _clauses(x, lg)
            hit = seen[x] = (_score_clauses(cl, lg), lg)
            tokens[x] = _content(cl, lg)
        return hit

    for batch in rows.to_pyarrow_batches(chunk_size=batch_size):
        df = batch.to_pandas()
        if df.empty:
            continue
        scored = [one(x) for x in df["text"]]
        df["score"] = [s for s, _ in scored]
        df["lang"] = [lg for _, lg in scored]
        df["label"] = [label_of(s) for s in df["score"]]
        df["themes"] = [themes_of(x, lg) for x, lg in zip(df["text"], df["lang"], strict=True)]
        parts.append(df)
    cols = ["id", "user_id", "grp", "text", "score", "label", "lang", "themes"]
    return pd.concat(parts, ignore_index=True)[cols] if parts else pd.DataFrame(columns=cols)


@dataclass(frozen=True)
class TextResult(Result):
    """Sentiment share and top complaint themes per group (table), plus themes, keywords and scored texts."""

    themes: Any = field(default=None, repr=False)  # theme, label, complaints, share, top_terms
    keywords: Any = field(default=None, repr=False)  # term, score, docs
    texts: Any = field(default=None, repr=False)  # one row per text
    name: str = "text"

    def to_dict(self) -> dict[str, Any]:
        doc = super().to_dict()
        doc["themes"] = Result(table=self.themes).to_dict()["rows"]
        doc["keywords"] = Result(table=self.keywords).to_dict()["rows"]
        return doc

    def chart(self, lang: str | None = None) -> dict[str, Any]:
        """Stacked bars: share of positive, neutral and negative texts per group."""
        import altair as alt  # noqa: PLC0415

        long = self.table.melt(id_vars=["group"], value_vars=list(LABELS), var_name="label", value_name="share")
        long["label"] = long["label"].map(lambda x: t(f"text.label.{x}", lang))
        return alt.Chart(long, title=t("text.chart.title", lang)).mark_bar().encode(
            y=alt.Y("group:N", title=t("text.col.group", lang), sort="-x"),
            x=alt.X("share:Q", title=t("text.col.share", lang), stack="normalize"),
            color=alt.Color("label:N", title=t("text.col.label", lang),
                            scale=alt.Scale(domain=[t(f"text.label.{x}", lang) for x in LABELS],
                                            range=["#4c9a5b", "#b0b0b0", "#d0523f"])),
        ).to_dict()


def _theme_str(counter: Counter, top: int, lang: str | None) -> str:
    return "; ".join(f"{t(f'text.theme.{k}', lang)} ({v})" for k, v in
                     sorted(counter.items(), key=lambda kv: (-kv[1], THEMES.index(kv[0])))[:top])


def analyze_text(ws: Any, source: str = "tickets", by: str = "category", *, top: int = 10, lang: str = "auto",
                 write: bool = False) -> TextResult:
    """Sentiment share and complaint themes (with their TF-IDF terms) by category, product or segment.

    A complaint is a negative text; its themes come from the keyword → theme map. write=True stores each
    customer's avg_sentiment (tickets and feedback together) in the profile.
    """
    _check("lang", lang, LANGS)
    if not isinstance(top, int) or top < 1:
        raise _bad("top", top, ("an integer >= 1",))
    tokens: dict[str, list[str]] = {}  # each text tokenized once: for its score and for the three TF-IDFs
    scored = score_rows(text_rows(ws, source, by), lang, tokens=tokens)
    if scored.empty:
        raise DataError(t("text.err.empty", None, source=source), where=source, fix=t("text.err.empty.fix"))
    ui_lang = None
    neg = scored[scored["label"] == "negative"]
    rows = []
    kw_by_group = _tfidf_top({g: list(x) for g, x in scored.groupby("grp")["text"]}, 5, lang, tokens)
    kw_map = kw_by_group.groupby("group")["term"].agg(lambda s: ", ".join(s)).to_dict()
    for g, grp in scored.groupby("grp", sort=False):
        shares = grp["label"].value_counts(normalize=True)
        cnt = Counter(th for ths in grp.loc[grp["label"] == "negative", "themes"] for th in ths)
        rows.append({"group": str(g), "n": len(grp), "avg_sentiment": float(grp["score"].mean()),
                     **{lb: float(shares.get(lb, 0.0)) for lb in LABELS},
                     "complaints": int((grp["label"] == "negative").sum()),
                     "top_themes": _theme_str(cnt, 3, ui_lang), "keywords": kw_map.get(g, "")})
    table = pd.DataFrame(rows).sort_values(["n", "group"], ascending=[False, True]).reset_index(drop=True)
    counts = Counter(th for ths in neg["themes"] for th in ths)
    per_theme = {th: [x for x, ths in zip(neg["text"], neg["themes"], strict=True) if th in ths] for th in counts}
    terms = _tfidf_top(per_theme, top, lang, tokens) if per_theme else pd.DataFrame(columns=["group", "term"])
    term_map = terms.groupby("group")["term"].agg(lambda s: ", ".join(s)).to_dict()
    themes = pd.DataFrame([{"theme": th, "label": t(f"text.theme.{th}", ui_lang), "complaints": counts[th],
                            "share": counts[th] / max(len(neg), 1), "top_terms": term_map.get(th, "")}
                           for th in sorted(counts, key=lambda k: (-counts[k], THEMES.index(k)))],
                          columns=["theme", "label", "complaints", "share", "top_terms"])
    kws = keywords(scored["text"].tolist(), top, lang, tokens=tokens)
    del tokens
    written = 0
    if write:
        written = write_sentiment(ws, lang=lang, scored={source: scored})
    summary = {"texts": len(scored), "groups": len(table), "avg_sentiment": float(scored["score"].mean()),
               **{f"{lb}_share": float((scored["label"] == lb).mean()) for lb in LABELS},
               "complaints": len(neg), "top_theme": themes["theme"].iloc[0] if len(themes) else None,
               "languages": scored["lang"].value_counts().to_dict(), "customers_written": written}
    params = {"source": source, "by": by, "top": top, "lang": lang, "neutral_band": NEUTRAL_BAND}
    return TextResult(table=table, params=params, summary=summary, themes=themes, keywords=kws, texts=scored)


def customer_sentiment(ws: Any, lang: str = "auto", scored: dict[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """Per customer (stitched person): avg_sentiment over all ticket and feedback texts, and their count.

    `scored` holds sources already scored with the same lang (score_rows of text_rows, any grouping: the
    rows and scores do not depend on it), which are not scored again."""
    parts = []
    for source in TEXT_SOURCES:
        if scored is not None and source in scored:
            s = scored[source]
            parts.append(s[s["user_id"].notnull()][["user_id", "score"]])
        elif ws.has_table(source) and ws.row_count(source):
            s = score_rows(text_rows(ws, source, None), lang)
            parts.append(s[s["user_id"].notnull()][["user_id", "score"]])
    if not parts:
        return pd.DataFrame(columns=["user_id", "avg_sentiment", "n_texts"])
    allp = pd.concat(parts, ignore_index=True)
    out = allp.groupby("user_id")["score"].agg(avg_sentiment="mean", n_texts="size").reset_index()
    out["user_id"] = out["user_id"].astype(str)
    return out


def write_sentiment(ws: Any, lang: str = "auto", scored: dict[str, pd.DataFrame] | None = None) -> int:
    """Write avg_sentiment per customer into the profile (profile_scores); returns the number of customers."""
    from custlens.profile.build import write_scores  # noqa: PLC0415

    cs = customer_sentiment(ws, lang, scored)
    if cs.empty:
        return 0
    write_scores(ws, cs[["user_id", "avg_sentiment"]].reset_index(drop=True))
    return len(cs)


# ----------------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------------
def register_cli(model_app: typer.Typer) -> None:
    """Add `custlens model text`."""
    import typer  # noqa: PLC0415

    @model_app.command("text")
    def text_cmd(
        source: str = typer.Option("tickets", "--source", help="tickets | feedback."),
        by: str = typer.Option("category", "--by", help="category | product_id | segment."),
        top: int = typer.Option(10, "--top", help="Keywords and theme terms to show."),
        lang: str = typer.Option("auto", "--text-lang", help="Language of the texts: auto | zh | en."),
        write: bool = typer.Option(True, "--write/--no-write", help="Write avg_sentiment into the profile."),
        fmt: Format = typer.Option(Format.table, "--format", help="table | json | csv."),
    ) -> None:
        """Sentiment, keywords and complaint themes of ticket or review texts (zh and en)."""
        from custlens.cli import emit, err, open_ws, print_frame  # noqa: PLC0415

        with open_ws() as ws:  # read-write: open_ws creates the security tables on first use
            res = analyze_text(ws, source=source, by=by, top=top, lang=lang, write=write)
        if fmt is Format.json:
            emit(res.to_dict(), fmt)
            return
        if fmt is Format.csv:
            emit(None, fmt, frame=res.table)
            return
        if write:
            err.print(t("text.cli.written", None, n=res.summary["customers_written"]))
        print_frame(res.table, title=t("text.cli.groups", None, source=source, by=by, n=res.summary["texts"]))
        print_frame(res.themes, title=t("text.cli.themes"))
        print_frame(res.keywords, title=t("text.cli.keywords"), max_rows=top)
