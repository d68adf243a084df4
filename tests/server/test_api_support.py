"""Shared by the API and page tests: ONE generated demo workspace and ONE real uvicorn server per session.

The workspace: custlens.demo data for ~2,000 customers, each manifest entry ingested, cleaned, profiled and
tagged; users for every role (two admins for the two-person rule, a regional analyst with a row filter).
The server: `create_app(ws)` run by uvicorn in a subprocess on a free 127.0.0.1 port.
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

PASSWORD = "correct-horse-1"
USERS = {  # name → (roles, attributes)
    "adm": (["admin"], {}),
    "adm2": (["admin"], {}),
    "ana": (["analyst"], {}),
    "mkt": (["marketing"], {}),
    "ops": (["operations"], {}),
    "aud": (["auditor"], {}),
    "svc": (["service"], {}),
    "reg": (["regional"], {"provinces": ["广东"]}),
    "reg2": (["regional"], {"provinces": ["北京"]}),  # same role set, other attributes: nothing cached is shared
}
REGIONAL_ROLE = """
[security.custom_roles.regional]
inherits = "analyst"
row_filters = { customers = "province IN :provinces" }
"""


@dataclass
class Server:
    url: str
    root: Path
    proc: subprocess.Popen

    def client(self, user: str | None = None) -> httpx.Client:
        """An HTTP client, logged in through POST /api/v1/login when a user is named."""
        c = httpx.Client(base_url=self.url, timeout=120, trust_env=False)
        if user:
            r = httpx.post(self.url + "/api/v1/login", json={"username": user, "password": PASSWORD}, timeout=60,
                           trust_env=False)
            r.raise_for_status()
            c.headers["Authorization"] = "Bearer " + r.json()["token"]
        return c


_SERVER: Server | None = None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_workspace(root: Path, customers: int = 2000) -> Path:
    """Generate, ingest, clean, profile and tag a demo workspace, then add the test users."""
    from custlens.demo import generate
    from custlens.ingest.loader import ingest
    from custlens.security.users import add_user
    from custlens.workspace import init, open_workspace

    ws = init(root)
    with (root / "custlens.toml").open("a", encoding="utf-8") as f:
        f.write(REGIONAL_ROLE)
    ws.close()
    ws = open_workspace(root)
    gen = generate(root / "data", customers=customers, seed=11, lang="zh", fmt="csv")
    for entry in gen.manifest:
        ingest(ws, [root / "data" / entry["file"]], entry["table"])
    try:
        from custlens.clean.pipeline import clean

        clean(ws)
    except ImportError:
        pass
    from custlens.profile.build import build_profile
    from custlens.profile.tags import build_tags

    build_profile(ws)
    build_tags(ws)
    for name, (roles, attrs) in USERS.items():
        add_user(ws, name, PASSWORD, roles, attributes=attrs, display_name=name.upper())
    ws.close()
    return root


def start_server(root: Path) -> Server:
    port = _free_port()
    code = ("import sys, uvicorn; from custlens.server.app import create_app; "
            "uvicorn.run(create_app(sys.argv[1]), host='127.0.0.1', port=int(sys.argv[2]), log_level='warning')")
    log = open(root / "server.log", "w")  # noqa: SIM115
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    proc = subprocess.Popen([sys.executable, "-c", code, str(root), str(port)], stdout=log, stderr=subprocess.STDOUT,
                            env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited: " + (root / "server.log").read_text())
        try:
            if httpx.get(url + "/login", timeout=2, trust_env=False).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    else:
        proc.terminate()
        raise RuntimeError("server did not start: " + (root / "server.log").read_text())
    return Server(url=url, root=root, proc=proc)


def get_server() -> Server:
    """The session's server (built on first use; stopped at exit)."""
    global _SERVER
    if _SERVER is None:
        root = Path(os.environ.get("CUSTLENS_TEST_SERVER_WS") or tempfile.mkdtemp(prefix="custlens-srv-")) / "ws"
        if not (root / "custlens.toml").exists():
            build_workspace(root)
        _SERVER = start_server(root)
        atexit.register(stop_server)
    return _SERVER


def stop_server() -> None:
    global _SERVER
    if _SERVER is not None:
        _SERVER.proc.terminate()
        try:
            _SERVER.proc.wait(15)
        except subprocess.TimeoutExpired:
            _SERVER.proc.kill()
        _SERVER = None


if __name__ == "__main__":  # a dev server: python tests/server/test_api_support.py [DIR]
    root = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp()) / "ws"
    if not (root / "custlens.toml").exists():
        build_workspace(root)
    s = start_server(root)
    print(s.url, flush=True)
    s.proc.wait()
