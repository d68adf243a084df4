"""Lexicon sentiment (zh via jieba, en): negation, degree, contrast, and accuracy on labelled sets."""

from __future__ import annotations

import pytest
from tests.conftest import DATA

from custlens.errors import ValidationError
from custlens.models.text import (
    SentimentAnalyzer,
    detect_lang,
    evaluate_sentiment,
    keywords,
    score_text,
    sentiment,
    themes_of,
)

TEXT = DATA / "text"


@pytest.mark.parametrize(("name", "floor"), [("zh", 0.85), ("en", 0.85), ("holdout", 0.75)])
def test_text_sentiment_accuracy_floor_on_labelled_sets(name: str, floor: float) -> None:
    r = evaluate_sentiment(TEXT / f"sentiment_{name}.csv")
    assert r["n"] >= (120 if name == "zh" else 60 if name == "en" else 30)
    assert r["accuracy"] >= floor, r["errors"]
    assert r["macro_f1"] >= floor - 0.05
    assert sum(map(sum, r["confusion"])) == r["n"]


@pytest.mark.parametrize(("text", "label"), [
    ("满意", "positive"), ("不满意", "negative"), ("很不满意", "negative"), ("没有问题", "positive"),
    ("没问题", "positive"), ("质量不好", "negative"), ("不差", "positive"), ("别买", "negative"),
    ("无任何瑕疵", "positive"), ("一点都不好用", "negative"), ("从来没遇到过这么差的服务", "negative"),
    ("not bad", "positive"), ("not good", "negative"), ("no problems at all", "positive"),
    ("I don't like it", "negative"), ("never disappointed", "positive"), ("good", "positive"),
    ("请问什么时候发货", "neutral"), ("When will it ship?", "neutral"),
])
def test_text_sentiment_negation_cases(text: str, label: str) -> None:
    assert sentiment([text])["label"][0] == label


def test_text_sentiment_degree_contrast_and_range() -> None:
    s = {x: score_text(x)[0] for x in ("有点满意", "满意", "非常满意", "good", "very good", "slightly good")}
    assert s["有点满意"] < s["满意"] < s["非常满意"] <= 1.0
    assert s["slightly good"] < s["good"] < s["very good"]
    # the clause after 但是/but decides
    assert score_text("包装很好，但是质量太差")[0] < 0 < score_text("质量太差，但是客服很耐心")[0]
    assert score_text("bad box but great product")[0] > 0
    many = sentiment(["太好了！" * 50, "垃圾，" * 50, "", None])
    assert many["score"].between(-1, 1).all()
    assert list(many["label"][2:]) == ["neutral", "neutral"]
    assert list(sentiment("满意")["lang"]) == ["zh"]
    assert detect_lang("物流很快 fast") == "zh" and detect_lang("fast shipping, 好") == "en"
    assert sentiment(["满意"], lang="en")["label"][0] == "neutral"  # forced language: no English word here
    an = SentimentAnalyzer().fit()
    assert list(an.predict(["非常满意", "太差了"])) == ["positive", "negative"]
    with pytest.raises(ValidationError):
        sentiment(["x"], lang="fr")
    with pytest.raises(ValidationError):
        evaluate_sentiment([{"text": "x", "label": "great"}])


def test_text_keywords_and_themes() -> None:
    texts = ["物流太慢了，快递员态度也不好", "物流很慢，等了一周", "质量很好，物流也快", "包装破损，杯子碎了"]
    kw = keywords(texts, top=5)
    assert kw.iloc[0]["term"] == "物流" and kw.iloc[0]["docs"] == 3
    assert not set(kw["term"]) & {"了", "也", "很"}  # stopwords and modifiers are not keywords
    assert themes_of("物流太慢，包装也破了") == ["logistics", "packaging"]
    assert themes_of("客服不理人，要求退款") == ["refund", "service"]
    assert themes_of("The courier was late and support was rude") == ["logistics", "service"]
    assert themes_of("Overpriced, I want a refund") == ["refund", "price"]
    assert themes_of("很好") == [] and themes_of(None) == []
    en = keywords(["the battery died fast", "battery is weak", "great screen"], top=3)
    assert en.iloc[0]["term"] == "battery"


def _split_reference(tok: str, vocab: frozenset[str], prefixes: tuple[str, ...]) -> list[str]:
    """The prefix split as first written: every negator/degree prefix, longest first."""
    from custlens.models.text import ZH_PARTICLES

    for p in prefixes:
        if tok.startswith(p) and len(tok) > len(p):
            rest = tok[len(p):]
            if rest in vocab:
                return [p, rest]
            sub = _split_reference(rest, vocab, prefixes)
            if len(sub) > 1:
                return [p, *sub]
    for part in ZH_PARTICLES:
        if tok.endswith(part) and tok[:-1] in vocab:
            return [tok[:-1], part]
    return [tok]


def test_prefix_split_by_first_character_matches_trying_every_prefix() -> None:
    """tokens_zh looks up prefixes by their first character; on every prefix + word and prefix + prefix + word
    (and words with a particle) it splits as trying every prefix did."""
    from custlens.models.text import _split_zh_token, _zh_vocab, lexicon, modifiers

    vocab, by_first = _zh_vocab()
    neg, deg = modifiers("zh")
    prefixes = tuple(sorted(set(neg) | set(deg), key=len, reverse=True))
    words = sorted(lexicon("zh"))[:300] + ["满意", "好用", "坏"]
    cases = [p + w for p in prefixes for w in words] + [p + q + w for p in prefixes[:12] for q in prefixes[:12]
                                                        for w in words[:40]] + [w + "了" for w in words]
    split = 0
    for tok in cases:
        got = _split_zh_token(tok, vocab, by_first)
        assert got == _split_reference(tok, vocab, prefixes), tok
        split += len(got) > 1
    assert split > len(cases) // 2  # the cases exercise the split, not only the fall-through
