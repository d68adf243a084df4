"""Permission matrix: every role × table × column × access path sees exactly what its policy allows.

The expected matrix is written out by hand here (not derived from policy.py), so a change to a
policy that is not also a deliberate change to this table fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, datetime

import pytest

import custlens
from custlens.errors import PermissionDenied
from custlens.privacy.transforms import mask, protect_values
from custlens.security.context import aggregating, attach_user, owner
from custlens.security.export import export_table
from custlens.security.users import add_user
from tests.conftest import insert_rows

PHONE, EMAIL, IDN, NAME = "13812345678", "zhang@example.com", "440305199001011234", "张三"
ROLES = ["admin", "analyst", "marketing", "operations", "service", "management", "auditor"]
PW = "matrix-pass-1"

# table.column → role → expected form. clear = the stored value (a display form for PII columns),
# last4 / hash / redact / year = masked, hidden = column absent, DENIED = table refused.
D = "DENIED"
EXPECTED: dict[str, dict[str, str]] = {
    "customers.user_id": dict(admin="clear", analyst="clear", marketing="clear", operations="AGG", service="clear",
                              management="AGG", auditor=D),
    "customers.phone": dict(admin="clear", analyst="clear", marketing="last4", operations="AGG", service="last4",
                            management="AGG", auditor=D),
    "customers.email": dict(admin="clear", analyst="clear", marketing="hash", operations="AGG", service="hidden",
                            management="AGG", auditor=D),
    "customers.id_number": dict(admin="clear", analyst="hidden", marketing="hidden", operations="AGG",
                                service="hidden", management="AGG", auditor=D),
    "customers.name": dict(admin="clear", analyst="clear", marketing="redact", operations="AGG", service="clear",
                           management="AGG", auditor=D),
    "customers.birth_date": dict(admin="clear", analyst="year", marketing="year", operations="AGG", service="year",
                                 management="AGG", auditor=D),
    "customers.province": dict(admin="clear", analyst="clear", marketing="clear", operations="AGG", service="clear",
                               management="AGG", auditor=D),
    "customers.phone_pseudo": dict(admin="clear", analyst="clear", marketing="hidden", operations="AGG",
                                   service="hidden", management="AGG", auditor=D),
    "customers.phone_enc": dict(admin="hidden", analyst="hidden", marketing="hidden", operations="AGG",
                                service="hidden", management="AGG", auditor=D),
    "orders.amount": dict(admin="clear", analyst="clear", marketing="clear", operations="AGG", service="clear",
                          management="AGG", auditor=D),
    "tickets.text": dict(admin="clear", analyst="clear", marketing=D, operations=D, service="clear",
                         management="AGG", auditor=D),
    "channel_spend.cost": dict(admin="clear", analyst="clear", marketing="clear", operations="clear", service=D,
                               management="clear", auditor=D),
    "audit_log.action": dict(admin="clear", analyst=D, marketing=D, operations=D, service=D, management=D,
                             auditor="clear"),
}
# aggregates-only roles inside an analysis (the AGG cells): what the computation may use
AGG_VISIBLE = {"customers.user_id": True, "customers.phone": False, "customers.email": False,
               "customers.id_number": False, "customers.name": False, "customers.birth_date": "year",
               "customers.province": True, "customers.phone_pseudo": False, "customers.phone_enc": False,
               "orders.amount": True, "tickets.text": False}
EXPORT_CAP = dict(admin=None, analyst=100_000, marketing=10_000)


@pytest.fixture(scope="module")
def mws(tmp_path_factory):
    ws = custlens.init(tmp_path_factory.mktemp("m") / "ws")
    d, p, e = protect_values([PHONE] * 6, "phone", ws.key)
    ed, ep, ee = protect_values([EMAIL] * 6, "email", ws.key)
    idd, idp, ide = protect_values([IDN] * 6, "id_number", ws.key)
    nd, npp, ne = protect_values([NAME] * 6, "name", ws.key)
    insert_rows(ws, "customers", [
        {"user_id": f"U{i}", "phone": d[i], "phone_pseudo": p[i], "phone_enc": e[i], "email": ed[i],
         "email_pseudo": ep[i], "email_enc": ee[i], "id_number": idd[i], "id_number_pseudo": idp[i],
         "id_number_enc": ide[i], "name": nd[i], "name_pseudo": npp[i], "name_enc": ne[i],
         "birth_date": date(1990, 1, 1), "province": "广东"} for i in range(6)])
    insert_rows(ws, "orders", [{"order_id": f"o{i}", "user_id": f"U{i}", "order_time": datetime(2024, 1, 1),
                                "amount": 9.5, "status": "paid"} for i in range(6)])
    insert_rows(ws, "tickets", [{"ticket_id": "t1", "user_id": "U1", "created_time": datetime(2024, 1, 1),
                                 "text": "物流太慢"}])
    insert_rows(ws, "channel_spend", [{"date": date(2024, 1, 1), "channel": "短信", "campaign": "-", "cost": 3.0}])
    ws.actor = owner()
    for r in ROLES:
        add_user(ws, f"u_{r}", PW, [r])
    from custlens.security import audit

    audit.record(ws, "seed", username="system")
    ws.close()
    return ws.root


def _as(root, role):
    w = custlens.open(root)
    attach_user(w, user=f"u_{role}")
    return w


def _check_value(form: str, col: str, values: list) -> None:
    stored = {"customers.phone": mask(PHONE, "phone"), "customers.email": mask(EMAIL, "email"),
              "customers.id_number": mask(IDN, "id_number"), "customers.name": mask(NAME, "name")}
    v = values[0]
    if form == "clear":
        if col in stored:
            assert v == stored[col], (col, v)
        elif col == "customers.birth_date":
            assert str(v).startswith("1990-01-01")
    elif form == "last4":
        assert v == "****" + mask(PHONE, "phone")[-4:]
    elif form == "hash":
        assert len(v) == 16 and EMAIL not in v and "@" not in v
    elif form == "redact":
        assert v == "***"
    elif form == "year":
        assert int(v) == 1990
    # nothing ever shows the clear value
    for clear in (PHONE, EMAIL, IDN, NAME):
        assert clear not in str(values)


CELLS = [(r, c) for c in EXPECTED for r in ROLES]


@pytest.mark.parametrize("role,cell", CELLS)
def test_python_api_path(mws, role, cell):
    table, col = cell.split(".")
    form = EXPECTED[cell][role]
    w = _as(mws, role)
    try:
        if form == D:
            with pytest.raises(PermissionDenied):
                w.table(table)
            return
        if form == "AGG":
            with pytest.raises(PermissionDenied):
                w.table(table)
            with aggregating(w):
                cols = w.table(table).columns
            want = AGG_VISIBLE[cell]
            assert (col in cols) == bool(want), (role, cell)
            return
        df = w.table(table).to_pandas()
        if form == "hidden":
            assert col not in df.columns
            return
        assert col in df.columns
        _check_value(form, cell, df[col].tolist())
    finally:
        w.close()


@pytest.mark.parametrize("role", ROLES)
def test_export_path_and_caps(mws, role):
    w = _as(mws, role)
    try:
        if role not in EXPORT_CAP:
            with pytest.raises(PermissionDenied):
                export_table(w, "customers")
            return
        df = export_table(w, "customers")
        py = w.table("customers").to_pandas()
        assert list(df.columns) == list(py.columns) and len(df) == 6
        for cell in [c for c in EXPECTED if c.startswith("customers.")]:
            col = cell.split(".")[1]
            form = EXPECTED[cell][role]
            assert (col in df.columns) == (form not in ("hidden",)), (role, cell)
            if col in df.columns:
                _check_value(form, cell, df[col].tolist())
        w.config.security.bulk_export_rows = 3  # 6 customer rows is now a bulk export
        from custlens.errors import ApprovalRequired

        with pytest.raises(ApprovalRequired):
            export_table(w, "customers")
    finally:
        w.close()


@pytest.mark.parametrize("role", ["admin", "marketing", "service", "auditor"])
def test_cli_path(mws, role, tmp_path):
    env = {**os.environ, "CUSTLENS_WORKSPACE": str(mws), "CUSTLENS_PASSWORD": PW,
           "CUSTLENS_HOME": str(tmp_path)}
    p = subprocess.run([sys.executable, "-m", "custlens", "--as", f"u_{role}", "export", "customers", "--format",
                        "json"], capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    if role not in EXPORT_CAP:
        assert p.returncode != 0 and "Traceback" not in p.stderr
        return
    assert p.returncode == 0, p.stderr
    rows = json.loads(p.stdout)["rows"]
    for cell in [c for c in EXPECTED if c.startswith("customers.")]:
        col = cell.split(".")[1]
        form = EXPECTED[cell][role]
        assert (col in rows[0]) == (form != "hidden"), (role, cell)
        if col in rows[0]:
            _check_value(form, cell, [r[col] for r in rows])
