"""Recommendations: findings linked to the declarative library (recommendations.toml), filled from the data.

Each rule names the target, action, channel, timing, owner, steps and an assumed uplift; the target size
and the expected effect are computed from the finding's numbers, and the estimate says how.
"""

from __future__ import annotations

import ast
import functools
import operator
import tomllib
from dataclasses import dataclass, field
from datetime import date, timedelta
from importlib import resources
from typing import Any

from custlens.analytics.base import metric_label
from custlens.errors import ConfigError
from custlens.i18n import fmt_money, fmt_number, fmt_pct, register, t
from custlens.report.insights import Context, Finding

register({
    "rec.no_rule": {"zh": "（推荐库中暂无对应规则）", "en": "(no rule in the recommendation library)"},
})

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def safe_eval(formula: str, names: dict[str, Any]) -> float:
    """Evaluate + − × ÷ over named numbers (no calls, no attributes): the library stays declarative."""

    def ev(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return float(node.value)
        if isinstance(node, ast.Name):
            v = names.get(node.id)
            if not isinstance(v, (int, float)):
                raise ConfigError(f"unknown number {node.id!r} in effect formula {formula!r}",
                                  where="recommendations.toml", fix="use a number the finding provides")
            return float(v)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        raise ConfigError(f"effect formula {formula!r} may only use numbers, names and + - * /",
                          where="recommendations.toml", fix="simplify the formula")

    return ev(ast.parse(formula, mode="eval"))


@functools.cache
def library() -> dict[str, dict[str, Any]]:
    """The packaged rule library, by trigger."""
    text = resources.files("custlens.report").joinpath("recommendations.toml").read_text(encoding="utf-8")
    return {r["trigger"]: r for r in tomllib.loads(text)["rule"]}


@dataclass
class Recommendation:
    """One executable recommendation tied to the finding that triggered it."""

    finding_id: str
    target: str
    size: int | None
    action: str
    channel: str
    timing: str
    owner: str
    steps: list[str]
    effect: float
    effect_text: str
    basis: str
    follow_up: date
    kpi: str
    kpi_label: str
    uplift: float
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"finding_id": self.finding_id, "target": self.target, "size": self.size, "action": self.action,
                "channel": self.channel, "timing": self.timing, "owner": self.owner, "steps": self.steps,
                "expected_effect": round(self.effect, 2), "expected_effect_text": self.effect_text,
                "estimate": self.basis, "follow_up": self.follow_up.isoformat(), "kpi": self.kpi,
                "uplift_assumption": self.uplift}


class _Fmt(dict):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _names(ctx: Context, f: Finding, rule: dict[str, Any]) -> dict[str, Any]:
    from custlens.report.insights import _arpu_year  # noqa: PLC0415

    n: dict[str, Any] = {k: v for k, v in f.numbers.items() if not isinstance(v, (list, dict))}
    n["uplift"] = float(rule.get("uplift", 0))
    try:
        n["arpu"] = _arpu_year(ctx)
    except Exception:  # noqa: BLE001
        n["arpu"] = 0.0
    for k, v in list(n.items()):
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            n[f"{k}_fmt"] = fmt_money(v, ctx.lang) if abs(v) >= 100 else f"{v:.2f}"
            n[f"{k}_pct"] = fmt_pct(v, ctx.lang)
    return n


def recommend(ctx: Context, findings: list[Finding], limit: int = 8) -> list[Recommendation]:
    """A recommendation for each finding with a library rule, in the findings' (impact) order."""
    lib = library()
    out: list[Recommendation] = []
    seen: set[str] = set()
    for f in findings:
        rule = lib.get(f.type)
        if rule is None or f.type in seen:
            continue
        seen.add(f.type)
        names = _names(ctx, f, rule)
        size = names.get(rule.get("size", ""))
        size_i = int(size) if isinstance(size, (int, float)) else None
        names["size"] = fmt_number(size_i, ctx.lang) if size_i is not None else "—"
        try:
            effect = safe_eval(rule["effect"], names)
        except ConfigError:
            effect = 0.0
        fm = _Fmt(names)
        def L(key: str, rule: dict[str, Any] = rule, fm: _Fmt = fm) -> str:  # noqa: N802
            return str(rule[key][ctx.lang]).format_map(fm)

        kpi = rule.get("kpi", "")
        out.append(Recommendation(
            finding_id=f.id, target=L("target"), size=size_i, action=L("action"), channel=L("channel"),
            timing=L("timing"), owner=L("owner"), steps=[s.format_map(fm) for s in rule["steps"][ctx.lang]],
            effect=effect, effect_text=fmt_money(effect, ctx.lang), basis=L("basis"),
            follow_up=ctx.period_end + timedelta(days=int(rule.get("follow_up_days", 30))), kpi=kpi,
            kpi_label=metric_label(kpi, ctx.lang) if kpi else "", uplift=float(rule.get("uplift", 0))))
        if len(out) >= limit:
            break
    return out


def no_rule_text(lang: str) -> str:
    return t("rec.no_rule", lang)
