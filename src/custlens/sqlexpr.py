"""Safe user-written SQL expressions (tags, row filters, segment rules).

An expression is parsed with sqlglot and every node is checked against an allow-list: columns of
one known table, literals, comparisons, boolean logic, CASE, arithmetic and a few functions. No
subqueries, no statements, no table references, no file readers — so a rule can never escape.
"""

from __future__ import annotations

from typing import Any

import sqlglot
from sqlglot import exp

from custlens.errors import ValidationError

ALLOWED_NODES = (
    exp.Column, exp.Identifier, exp.Literal, exp.Boolean, exp.Null, exp.Paren, exp.Case, exp.If, exp.Not, exp.And,
    exp.Or, exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.In, exp.Between, exp.Is, exp.Like, exp.ILike,
    exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod, exp.Neg, exp.Coalesce, exp.Cast, exp.DataType, exp.Abs,
    exp.Round, exp.Floor, exp.Ceil, exp.Lower, exp.Upper, exp.Length, exp.Substring, exp.Window,
    exp.PercentRank, exp.Order, exp.Ordered, exp.Concat, exp.DPipe, exp.Least, exp.Greatest, exp.Tuple,
    exp.Nullif, exp.Ln, exp.Sqrt, exp.DataTypeParam, exp.Var, exp.Placeholder,
)
ALLOWED_ANON = {"ntile", "nullif"}
PREDICATES = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.In, exp.Between, exp.Is, exp.Like, exp.ILike,
              exp.And, exp.Or, exp.Not, exp.Boolean)


def parse_checked(expr: str, columns: list[str] | set[str], *, where: str,
                  params: dict[str, Any] | None = None) -> exp.Expression:
    """Parse `expr`, reject anything outside the allow-list, and bind :name placeholders from params.

    A placeholder without a value raises (fail closed) rather than matching nothing or everything.
    """
    try:
        tree = sqlglot.parse_one(expr, read="duckdb")
    except sqlglot.errors.ParseError as e:
        desc = e.errors[0]["description"] if e.errors else str(e)
        raise ValidationError(f"expression does not parse: {desc}", where=where,
                              fix="write one SQL expression over the table's columns") from None
    cols = set(columns)
    for node in list(tree.walk()):
        if isinstance(node, exp.Anonymous) and node.name.lower() in ALLOWED_ANON:
            continue
        if not isinstance(node, ALLOWED_NODES):
            raise ValidationError(f"expression uses {type(node).__name__.upper()}, which is not allowed here",
                                  where=where, fix="use columns, literals, comparisons, AND/OR/NOT, CASE, "
                                                   "arithmetic and simple functions only")
        if isinstance(node, exp.Column) and (node.table or node.name not in cols):
            raise ValidationError(f"expression refers to unknown column {node.sql()!r}", where=where,
                                  fix=f"use one of: {', '.join(sorted(cols))}")
    placeholders = list(tree.find_all(exp.Placeholder))
    for ph in placeholders:
        name = ph.name
        if params is None or name not in params or params[name] in (None, [], ""):
            raise ValidationError(f"expression needs :{name}, which is not set", where=where,
                                  fix=f"give the user the attribute {name!r}")
        ph.replace(_literal(params[name]))
    return tree


def _literal(v: Any) -> exp.Expression:
    if isinstance(v, (list, tuple, set)):
        return exp.Tuple(expressions=[_literal(x) for x in v])
    if isinstance(v, bool):
        return exp.Boolean(this=v)
    if isinstance(v, (int, float)):
        return exp.Literal.number(v)
    return exp.Literal.string(str(v))


def is_predicate(tree: exp.Expression) -> bool:
    return isinstance(tree, PREDICATES)


def columns_of(expr: str) -> set[str]:
    return {c.name for c in sqlglot.parse_one(expr, read="duckdb").find_all(exp.Column)}
