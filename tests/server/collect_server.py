"""Helpers for the collection API tests: a workspace with write keys and a real `custlens serve` subprocess."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

import custlens
from custlens.server.writer import create_write_key, revoke_write_key


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_workspace(root: Path, keys: tuple[str, ...] = ("web",), *, revoked: tuple[str, ...] = (),
                   spool_limit_mb: int | None = None, tz: str | None = None) -> tuple[Path, dict[str, str]]:
    """A fresh workspace with write keys (name → key); `revoked` keys are created then revoked."""
    ws = custlens.init(root)
    cfg = ws.root / "custlens.toml"
    text = cfg.read_text(encoding="utf-8")
    if spool_limit_mb is not None:
        text = text.replace("[server]\n", f"[server]\nspool_limit_mb = {spool_limit_mb}\n")
    if tz is not None:
        text = text.replace('timezone = "Asia/Shanghai"', f'timezone = "{tz}"')
    cfg.write_text(text, encoding="utf-8")
    out = {name: create_write_key(ws.duck, name) for name in keys + revoked}
    for name in revoked:
        revoke_write_key(ws.duck, name)
    ws.close()
    return ws.root, out


class Server:
    """`custlens serve` on 127.0.0.1 and a free port, in its own process."""

    def __init__(self, ws: Path, *, no_writer: bool = False) -> None:
        self.ws = ws
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [sys.executable, "-m", "custlens", "-w", str(ws), "serve", "--host", "127.0.0.1",
                "--port", str(self.port)]
        if no_writer:
            args.append("--no-writer")
        env = {**os.environ, "CUSTLENS_HOME": str(ws / ".home"), "CUSTLENS_LANG": "en"}
        self.log = open(ws / f"server-{self.port}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited: " + (ws / f"server-{self.port}.log").read_text())
            try:
                if httpx.get(self.url + "/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError("server did not start: " + (ws / f"server-{self.port}.log").read_text())
            time.sleep(0.1)

    def stats(self, key: str) -> dict:
        r = httpx.get(self.url + "/v1/stats", auth=(key, ""), timeout=10)
        r.raise_for_status()
        return r.json()

    def wait_drained(self, key: str, timeout: float = 60) -> dict:
        """Poll /v1/stats until the spool is empty (bounded); returns the last stats."""
        deadline = time.monotonic() + timeout
        while True:
            s = self.stats(key)
            if s["spool"]["pending_bytes"] == 0 or time.monotonic() > deadline:
                return s
            time.sleep(0.1)

    def kill(self) -> None:
        """kill -9: no shutdown code runs."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.log.close()

    def stop(self) -> None:
        """Graceful stop (SIGTERM): the writer drains and the warehouse is released."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self.log.close()
