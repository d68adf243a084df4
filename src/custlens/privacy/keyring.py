"""Encryption keys of a workspace: a keyring so keys can rotate without touching pseudonyms.

Pseudonyms are keyed with the workspace key and never change. Encrypted columns use the keyring's
current key (the workspace key until the first rotation); every token names its key id, so values
sealed with an older key stay readable until the rotation has re-encrypted them all.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from dataclasses import dataclass
from typing import Any

from custlens.errors import KeyMaterialError
from custlens.privacy.transforms import decrypt, encrypt, key_id, token_key_id
from custlens.workspace import Workspace

KEYRING = "keys/enc.keyring"


def _path(ws: Workspace) -> Any:
    return ws.root / KEYRING


def _load(ws: Workspace) -> dict[str, Any]:
    p = _path(ws)
    if not p.exists():
        return {"current": key_id(ws.key), "keys": {key_id(ws.key): "workspace"}}
    try:
        return json.loads(p.read_text())
    except Exception:
        raise KeyMaterialError("the encryption keyring is corrupt", where=str(p),
                               fix="restore keys/enc.keyring from your backup") from None


def _save(ws: Workspace, ring: dict[str, Any]) -> None:
    p = _path(ws)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(ring))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, p)


def _material(ws: Workspace, stored: str) -> bytes:
    return ws.key if stored == "workspace" else base64.b64decode(stored)


def current_key(ws: Workspace) -> bytes:
    """The key new values are encrypted with."""
    ring = _load(ws)
    return _material(ws, ring["keys"][ring["current"]])


def key_for(ws: Workspace, kid: str) -> bytes:
    ring = _load(ws)
    if kid not in ring["keys"]:
        raise KeyMaterialError(f"no key {kid!r} in the keyring for this encrypted value", where=str(_path(ws)),
                               fix="restore the keyring from a backup made before that key was retired")
    return _material(ws, ring["keys"][kid])


def seal(ws: Workspace, value: str) -> str:
    return encrypt(value, current_key(ws))


def open_token(ws: Workspace, token: str) -> str:
    """Decrypt a token with whichever keyring key sealed it; a wrong key is a clear error, never garbage."""
    kid = token_key_id(token)
    if kid is None:
        raise KeyMaterialError("not an encrypted custlens value", fix="check the column is an *_enc column")
    return decrypt(token, key_for(ws, kid))


@dataclass(frozen=True)
class Rotation:
    old: str
    new: str
    reencrypted: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {"old_key": self.old, "new_key": self.new, "reencrypted": self.reencrypted}


def _enc_columns(ws: Workspace) -> list[tuple[str, str]]:
    rows = ws.duck.execute("SELECT table_name, column_name FROM information_schema.columns "
                           "WHERE table_schema = 'main' AND column_name LIKE '%\\_enc' ESCAPE '\\' "
                           "ORDER BY 1, 2").fetchall()
    return [(t, c) for t, c in rows]


def rotate(ws: Workspace, *, batch: int = 5000, retire_old: bool = True) -> Rotation:
    """Add a new current key and re-encrypt every *_enc value in batches (reads keep working throughout)."""
    ring = _load(ws)
    old = ring["current"]
    new_key = secrets.token_bytes(32)
    new = key_id(new_key)
    ring["keys"][new] = base64.b64encode(new_key).decode()
    ring["current"] = new
    _save(ws, ring)
    counts: dict[str, int] = {}
    con = ws.duck
    for table, col in _enc_columns(ws):
        q = f'SELECT rowid, "{col}" FROM "{table}" WHERE "{col}" IS NOT NULL AND "{col}" NOT LIKE ?'
        rows = con.execute(q, [f"v1:{new}:%"]).fetchall()
        n = 0
        for i in range(0, len(rows), batch):
            chunk = rows[i:i + batch]
            updated = [(encrypt(open_token(ws, tok), new_key), rid) for rid, tok in chunk]
            con.execute("BEGIN TRANSACTION")
            try:
                con.executemany(f'UPDATE "{table}" SET "{col}" = ? WHERE rowid = ?', updated)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            n += len(chunk)
        counts[f"{table}.{col}"] = n
    if retire_old:
        left = sum(con.execute(f'SELECT COUNT(*) FROM "{t}" WHERE "{c}" NOT LIKE ? AND "{c}" IS NOT NULL',
                               [f"v1:{new}:%"]).fetchone()[0] for t, c in _enc_columns(ws))
        if left == 0 and ring["keys"].get(old) != "workspace":
            ring["keys"].pop(old, None)
            _save(ws, ring)
    return Rotation(old=old, new=new, reencrypted=counts)
