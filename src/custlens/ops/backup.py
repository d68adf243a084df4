"""Backup and restore: a consistent warehouse snapshot, archive/, custlens.toml, encrypted keys, audit head.

A backup folder holds warehouse.duckdb (a logical copy taken while this process holds the workspace),
archive/, custlens.toml, keys.enc (keys/ sealed with AES-GCM under a scrypt key from
CUSTLENS_BACKUP_PASSPHRASE — key material is never written in clear) and manifest.json with per-table
row counts and content checksums and per-file SHA-256. It is written to a temporary folder and renamed
into place, so an interrupted backup never looks complete. Restore verifies every table and file and
the audit chain before the restored workspace appears under its name.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from custlens.errors import CustlensError, KeyMaterialError, WorkspaceError
from custlens.i18n import register, t
from custlens.ops.archive import _crash_point, _fsync_dir, _fsync_file, recover, table_checksum
from custlens.workspace import CONFIG_FILE, WAREHOUSE_FILE, Workspace, quote

PASSPHRASE_ENV = "CUSTLENS_BACKUP_PASSPHRASE"
MANIFEST = "manifest.json"
KEYS_BLOB = "keys.enc"
FORMAT_VERSION = 1
SCRYPT = {"n": 2**15, "r": 8, "p": 1}
_TMP = ".custlens-partial-"


class BackupError(CustlensError):
    """A backup cannot be written, read or verified."""


register({
    "backup.no_pass": {"zh": "未设置备份口令（环境变量 {env}）", "en": "no backup passphrase (environment variable {env})"},
    "backup.no_pass.fix": {"zh": "设置 {env}（至少 12 个字符）；密钥只以该口令加密后写入备份",
                           "en": "set {env} (at least 12 characters); keys are written to the backup only "
                                 "encrypted with it"},
    "backup.short_pass": {"zh": "备份口令太短（{n} 个字符）", "en": "the backup passphrase is too short ({n} characters)"},
    "backup.dest_exists": {"zh": "备份目标已存在且非空", "en": "the backup destination exists and is not empty"},
    "backup.dest_exists.fix": {"zh": "换一个新目录（每次备份一个目录）", "en": "choose a new folder (one folder per "
                                                                        "backup)"},
    "backup.not_backup": {"zh": "不是 custlens 备份（缺少 manifest.json）", "en": "not a custlens backup (no "
                                                                            "manifest.json)"},
    "backup.not_backup.fix": {"zh": "指向 `custlens backup` 写出的目录", "en": "point at a folder written by "
                                                                         "`custlens backup`"},
    "backup.target_exists": {"zh": "恢复目标已存在且非空", "en": "the restore target exists and is not empty"},
    "backup.target_exists.fix": {"zh": "恢复到新目录；确认后再替换旧工作区", "en": "restore into a new folder, check it, "
                                                                          "then swap it for the old workspace"},
    "backup.bad_pass": {"zh": "无法解密备份中的密钥：口令错误或文件被篡改",
                        "en": "cannot decrypt the keys in the backup: wrong passphrase or tampered file"},
    "backup.bad_pass.fix": {"zh": "使用备份时的 {env}", "en": "use the {env} the backup was made with"},
    "backup.mismatch": {"zh": "校验失败：{what}", "en": "verification failed: {what}"},
    "backup.mismatch.fix": {"zh": "备份已损坏；使用另一份备份", "en": "the backup is damaged; use another backup"},
    "backup.failed": {"zh": "备份失败：{detail}", "en": "backup failed: {detail}"},
    "backup.failed.fix": {"zh": "未留下不完整的备份；释放空间后重试", "en": "no partial backup was left; free space and "
                                                                      "retry"},
    "backup.audit_bad": {"zh": "恢复后的审计日志校验失败：{problem}", "en": "the restored audit log failed "
                                                                         "verification: {problem}"},
})


# ----------------------------------------------------------------------------------------------------------
# encryption
# ----------------------------------------------------------------------------------------------------------
def _passphrase(required: bool = True) -> str | None:
    pw = os.environ.get(PASSPHRASE_ENV)
    if not pw:
        if not required:
            return None
        raise KeyMaterialError(t("backup.no_pass", None, env=PASSPHRASE_ENV), where=PASSPHRASE_ENV,
                               fix=t("backup.no_pass.fix", None, env=PASSPHRASE_ENV))
    if len(pw) < 12:
        raise KeyMaterialError(t("backup.short_pass", None, n=len(pw)), where=PASSPHRASE_ENV,
                               fix=t("backup.no_pass.fix", None, env=PASSPHRASE_ENV))
    return pw


def _kdf(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt  # noqa: PLC0415

    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode("utf-8"))


def seal(data: bytes, passphrase: str) -> tuple[bytes, dict[str, Any]]:
    """AES-256-GCM under scrypt(passphrase); returns (ciphertext, parameters to store beside it)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415

    salt, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
    key = _kdf(passphrase, salt, **SCRYPT)
    ct = AESGCM(key).encrypt(nonce, data, b"custlens-backup-keys-v1")
    return ct, {"cipher": "AES-256-GCM", "kdf": "scrypt", **SCRYPT, "salt": base64.b64encode(salt).decode(),
                "nonce": base64.b64encode(nonce).decode()}


def unseal(ct: bytes, params: dict[str, Any], passphrase: str) -> bytes:
    from cryptography.exceptions import InvalidTag  # noqa: PLC0415
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415

    key = _kdf(passphrase, base64.b64decode(params["salt"]), params["n"], params["r"], params["p"])
    try:
        return AESGCM(key).decrypt(base64.b64decode(params["nonce"]), ct, b"custlens-backup-keys-v1")
    except InvalidTag:
        raise KeyMaterialError(t("backup.bad_pass"), where=KEYS_BLOB,
                               fix=t("backup.bad_pass.fix", None, env=PASSPHRASE_ENV)) from None


# ----------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------
def sha256_file(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _tables(con: Any, catalog: str) -> list[str]:
    rows = con.execute("SELECT table_name FROM information_schema.tables WHERE table_catalog = ? AND "
                       "table_schema = 'main' AND table_type = 'BASE TABLE' ORDER BY table_name", [catalog]).fetchall()
    return [r[0] for r in rows]


def table_stats(con: Any, catalog: str) -> dict[str, dict[str, Any]]:
    """{table: {rows, checksum}} for every base table of an attached database."""
    return {name: dict(zip(("rows", "checksum"),
                           table_checksum(con, f"SELECT * FROM {quote(catalog)}.main.{quote(name)}"), strict=True))
            for name in _tables(con, catalog)}


def _empty_or_absent(p: Path) -> bool:
    return not p.exists() or (p.is_dir() and not any(p.iterdir()))


def _fsync_tree(root: Path) -> None:
    for p in root.rglob("*"):
        if p.is_file():
            _fsync_file(p)
    for d in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        _fsync_dir(d)


# ----------------------------------------------------------------------------------------------------------
# backup
# ----------------------------------------------------------------------------------------------------------
@dataclass
class BackupResult:
    """Where the backup went and what it holds."""

    path: str
    tables: dict[str, dict[str, Any]]
    files: int
    bytes: int
    audit: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "tables": self.tables, "files": self.files, "bytes": self.bytes,
                "audit": self.audit}


Progress = Callable[[str], None]


def backup(ws: Workspace, dest: str | Path, *, progress: Progress | None = None) -> BackupResult:
    """Write a verified, consistent backup of the workspace into the new folder `dest`."""
    say = progress or (lambda s: None)
    dest = Path(dest).expanduser().resolve()
    if not _empty_or_absent(dest):
        raise BackupError(t("backup.dest_exists"), where=str(dest), fix=t("backup.dest_exists.fix"))
    passphrase = _passphrase()
    recover(ws)  # no half-archived files in the copy
    dest.parent.mkdir(parents=True, exist_ok=True)
    for stale in dest.parent.glob(f"{_TMP}{dest.name}-*"):  # left by an interrupted run
        shutil.rmtree(stale, ignore_errors=True)
    tmp = dest.parent / f"{_TMP}{dest.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        manifest = _write_backup(ws, tmp, passphrase, say)
        _crash_point("backup_before_rename")
        if dest.exists():
            dest.rmdir()
        os.replace(tmp, dest)
        _fsync_dir(dest.parent)
    except CustlensError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except Exception as e:
        shutil.rmtree(tmp, ignore_errors=True)
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise BackupError(t("backup.failed", None, detail=detail[:300]), where=str(dest),
                          fix=t("backup.failed.fix")) from None
    total = sum(f.stat().st_size for f in dest.rglob("*") if f.is_file())
    return BackupResult(path=str(dest), tables=manifest["tables"], files=len(manifest["files"]), bytes=total,
                        audit=manifest["audit"])


def _write_backup(ws: Workspace, tmp: Path, passphrase: str, say: Progress) -> dict[str, Any]:
    import duckdb  # noqa: PLC0415

    con = ws.duck
    say("warehouse")
    con.execute("CHECKPOINT")
    src_db = con.execute("SELECT current_database()").fetchone()[0]
    src_stats = table_stats(con, src_db)
    target = tmp / WAREHOUSE_FILE
    con.execute(f"ATTACH '{str(target).replace(chr(39), chr(39) * 2)}' AS _custlens_backup")
    try:
        con.execute(f"COPY FROM DATABASE {quote(src_db)} TO _custlens_backup")
        _crash_point("backup_mid")
        bk_stats = table_stats(con, "_custlens_backup")
    finally:
        con.execute("DETACH _custlens_backup")
    if bk_stats != src_stats:
        bad = sorted(k for k in set(src_stats) | set(bk_stats) if src_stats.get(k) != bk_stats.get(k))
        raise BackupError(t("backup.mismatch", None, what="tables " + ", ".join(bad)), where=str(target),
                          fix=t("backup.failed.fix"))
    files: dict[str, dict[str, Any]] = {}
    say("archive")
    if ws.archive_dir.exists():
        for f in sorted(ws.archive_dir.rglob("*")):
            if f.is_file():
                rel = f.relative_to(ws.root).as_posix()
                out = tmp / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, out)
                files[rel] = {"bytes": out.stat().st_size, "sha256": sha256_file(out)}
    cfg = ws.root / CONFIG_FILE
    shutil.copy2(cfg, tmp / CONFIG_FILE)
    files[CONFIG_FILE] = {"bytes": cfg.stat().st_size, "sha256": sha256_file(tmp / CONFIG_FILE)}
    say("keys")
    keys_dir = ws.root / "keys"
    blob = {p.relative_to(ws.root).as_posix(): base64.b64encode(p.read_bytes()).decode()
            for p in sorted(keys_dir.rglob("*")) if p.is_file() and not p.name.endswith(".tmp")} \
        if keys_dir.exists() else {}
    ct, params = seal(json.dumps(blob).encode(), passphrase)
    (tmp / KEYS_BLOB).write_bytes(ct)
    audit = _audit_head(ws)
    manifest = {
        "format": FORMAT_VERSION, "created_at": datetime.now().isoformat(timespec="seconds"),
        "workspace": str(ws.root), "duckdb_version": duckdb.__version__, "tables": bk_stats,
        "warehouse": {"file": WAREHOUSE_FILE, "bytes": target.stat().st_size, "sha256": sha256_file(target)},
        "files": files, "keys": {"file": KEYS_BLOB, "entries": sorted(blob), "sha256": sha256_file(tmp / KEYS_BLOB),
                                  **params, "key_from_env": bool(os.environ.get(ws.config.privacy.key_env))},
        "audit": audit,
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8")
    _fsync_tree(tmp)
    return manifest


def _audit_head(ws: Workspace) -> dict[str, Any]:
    p = ws.root / "keys" / "audit.head"
    if not p.exists():
        return {"records": 0, "head": None}
    try:
        h = json.loads(p.read_text())
        return {"records": h.get("n"), "head": h.get("head")}
    except (OSError, json.JSONDecodeError):
        return {"records": None, "head": None, "problem": "unreadable head file"}


# ----------------------------------------------------------------------------------------------------------
# restore
# ----------------------------------------------------------------------------------------------------------
@dataclass
class RestoreReport:
    """Per-table verification of a restore and the audit verification result."""

    path: str
    tables: dict[str, dict[str, Any]]
    files: int
    audit: dict[str, Any]
    checksums_compared: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "tables": self.tables, "files": self.files, "audit": self.audit,
                "checksums_compared": self.checksums_compared}


def read_manifest(src: Path) -> dict[str, Any]:
    p = src / MANIFEST
    if not p.exists():
        raise BackupError(t("backup.not_backup"), where=str(src), fix=t("backup.not_backup.fix"))
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise BackupError(t("backup.mismatch", None, what=f"manifest.json unreadable ({e})"), where=str(p),
                          fix=t("backup.mismatch.fix")) from None


def restore(src: str | Path, to: str | Path, *, progress: Progress | None = None) -> RestoreReport:
    """Restore a backup into the new workspace folder `to`, verifying tables, files, keys and the audit chain."""
    import duckdb  # noqa: PLC0415

    say = progress or (lambda s: None)
    src = Path(src).expanduser().resolve()
    to = Path(to).expanduser().resolve()
    man = read_manifest(src)
    if not _empty_or_absent(to):
        raise BackupError(t("backup.target_exists"), where=str(to), fix=t("backup.target_exists.fix"))
    passphrase = _passphrase()

    def bad(what: str, where: Path | str) -> BackupError:
        return BackupError(t("backup.mismatch", None, what=what), where=str(where), fix=t("backup.mismatch.fix"))

    say("files")
    for rel, meta in {**man["files"], man["warehouse"]["file"]: man["warehouse"],
                      KEYS_BLOB: {"sha256": man["keys"]["sha256"]}}.items():
        p = src / rel
        if not p.exists():
            raise bad(f"{rel} is missing", p)
        if sha256_file(p) != meta["sha256"]:
            raise bad(f"{rel} does not match its checksum", p)
    keys = json.loads(unseal((src / KEYS_BLOB).read_bytes(), man["keys"], passphrase))
    to.parent.mkdir(parents=True, exist_ok=True)
    tmp = to.parent / f"{_TMP}{to.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        shutil.copy2(src / man["warehouse"]["file"], tmp / WAREHOUSE_FILE)
        for rel in man["files"]:
            out = tmp / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / rel, out)
        (tmp / "archive").mkdir(exist_ok=True)
        (tmp / "reports").mkdir(exist_ok=True)
        kd = tmp / "keys"
        kd.mkdir(mode=0o700, exist_ok=True)
        os.chmod(kd, 0o700)
        for rel, b64 in keys.items():
            out = tmp / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(base64.b64decode(b64))
        say("tables")
        same_version = man.get("duckdb_version") == duckdb.__version__
        con = duckdb.connect(str(tmp / WAREHOUSE_FILE))
        try:
            got = table_stats(con, con.execute("SELECT current_database()").fetchone()[0])
        finally:
            con.close()
        tables: dict[str, dict[str, Any]] = {}
        for name in sorted(set(man["tables"]) | set(got)):
            want, have = man["tables"].get(name), got.get(name)
            ok = want is not None and have is not None and want["rows"] == have["rows"] and (
                not same_version or want["checksum"] == have["checksum"])
            tables[name] = {"rows": None if have is None else have["rows"],
                            "expected_rows": None if want is None else want["rows"], "ok": ok}
            if not ok:
                raise bad(f"table {name}: expected {want}, found {have}", tmp / WAREHOUSE_FILE)
        _fsync_tree(tmp)
        say("audit")
        audit = _verify_audit(tmp)
        os.replace(tmp, to) if not to.exists() else (to.rmdir(), os.replace(tmp, to))
        _fsync_dir(to.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return RestoreReport(path=str(to), tables=tables, files=len(man["files"]), audit=audit,
                         checksums_compared=same_version)


def _verify_audit(root: Path) -> dict[str, Any]:
    """security.audit.verify on the restored workspace; a broken chain refuses the restore."""
    from custlens.security.audit import verify  # noqa: PLC0415
    from custlens.workspace import open_workspace  # noqa: PLC0415

    ws = open_workspace(root)
    try:
        v = verify(ws)
    except CustlensError:
        raise
    except Exception as e:  # noqa: BLE001
        raise WorkspaceError(t("backup.audit_bad", None, problem=str(e)), where=str(root),
                             fix=t("backup.mismatch.fix")) from None
    finally:
        ws.close()
    if not v.ok:
        raise BackupError(t("backup.audit_bad", None, problem=v.problem), where=str(root / "keys" / "audit.head"),
                          fix=t("backup.mismatch.fix"))
    return v.to_dict()
