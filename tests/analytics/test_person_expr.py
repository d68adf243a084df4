"""Who an event belongs to: user_id, or anonymous_id when user_id is missing or blank (whitespace only)."""

from __future__ import annotations

import ibis

from custlens.analytics._time import person_expr

ROWS = [  # (user_id, anonymous_id, person)
    ("u1", "a1", "u1"),
    ("", "a2", "a2"),
    ("  ", "a3", "a3"),
    (" \t\n", "a4", "a4"),
    (" lead", "a5", " lead"),  # starts with a space but is not blank: kept as it is
    ("\x01x", "a6", "\x01x"),
    (None, "a7", "a7"),
    (None, " ", None),
    ("", "", None),
    ("!", "a8", "!"),
    ("客户", "a9", "客户"),
    (None, " b", " b"),
]


def test_person_is_the_first_non_blank_id(ws):
    t = ibis.memtable({"user_id": [r[0] for r in ROWS], "anonymous_id": [r[1] for r in ROWS],
                       "i": list(range(len(ROWS)))}, schema={"user_id": "string", "anonymous_id": "string",
                                                             "i": "int64"})
    got = ws.con.execute(t.select(t.i, p=person_expr(t)).order_by("i"))
    assert [None if v is None or v != v else v for v in got.p] == [r[2] for r in ROWS]
    only_uid = t.select(t.user_id, t.i)
    got = ws.con.execute(only_uid.select(only_uid.i, p=person_expr(only_uid)).order_by("i"))
    want = [r[0] if r[0] is not None and r[0].strip(" \t\n") else None for r in ROWS]
    assert [None if v is None or v != v else v for v in got.p] == want
