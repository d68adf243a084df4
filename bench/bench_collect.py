"""Event collection throughput: a real `custlens serve` on loopback under a bounded httpx load generator.

Cases: single-event /v1/track calls and 100-event /v1/batch calls. Reported per case: acknowledged
events/s (client view), end-to-end events/s (until the last acknowledged event is in the warehouse),
request latency p50/p99, and loss = acknowledged - stored (must be 0). The load generator runs on the
same machine as the server, so both share the cores.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

SIZES = {  # (single-event calls, batch calls of 100, client threads single, client threads batch, seconds cap)
    "S": (3_000, 300, 8, 4, 60),
    "M": (10_000, 1_000, 8, 4, 120),
    "L": (30_000, 3_000, 12, 6, 300),
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(root: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    log = open(root / "server.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "custlens", "-w", str(root), "serve", "--host", "127.0.0.1",
                             "--port", str(port)], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "CUSTLENS_HOME": str(root / ".home")})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError((root / "server.log").read_text())
        try:
            if httpx.get(url + "/v1/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start")


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _load(url: str, key: str, *, calls: int, per_call: int, threads: int, cap_s: float, tag: str
          ) -> tuple[int, list[float], float]:
    """Send `calls` requests of `per_call` events from `threads` threads (stops at cap_s) → (acked, latencies, s)."""
    lock = threading.Lock()
    acked = [0]
    lat: list[float] = []
    counter = iter(range(calls))
    t0 = time.perf_counter()
    deadline = t0 + cap_s

    def worker(tid: int) -> None:
        with httpx.Client(auth=(key, ""), timeout=30, limits=httpx.Limits(max_connections=2)) as c:
            while time.perf_counter() < deadline:
                with lock:
                    n = next(counter, None)
                if n is None:
                    return
                evs = [{"type": "track", "event": "view", "userId": f"u{(n * per_call + i) % 5000}",
                        "messageId": f"{tag}-{n}-{i}", "timestamp": "2024-05-01T10:00:00Z",
                        "properties": {"product_id": f"p{i % 300}", "duration": i % 60},
                        "context": {"ip": f"10.0.{n % 250}.{i % 250}", "platform": "web"}} for i in range(per_call)]
                s = time.perf_counter()
                if per_call == 1:
                    r = c.post(url + "/v1/track", json=evs[0])
                else:
                    r = c.post(url + "/v1/batch", json={"batch": evs})
                e = time.perf_counter() - s
                with lock:
                    lat.append(e)
                    if r.status_code == 200:
                        acked[0] += r.json()["accepted"]

    ths = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    return acked[0], lat, time.perf_counter() - t0


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def run(size: str = "S") -> list[dict]:
    """bench/run.py contract: one row per case."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import custlens
    from custlens.server.writer import create_write_key

    single_calls, batch_calls, th_single, th_batch, cap = SIZES[size]
    rows = []
    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / "ws"
        ws = custlens.init(root)
        keys = {case: create_write_key(ws.duck, case) for case in ("single", "batch100")}
        ws.close()
        proc, url = _start(root)
        try:
            for case, calls, per, th in (("single", single_calls, 1, th_single),
                                         ("batch100", batch_calls, 100, th_batch)):
                key = keys[case]
                acked, lat, secs = _load(url, key, calls=calls, per_call=per, threads=th, cap_s=cap, tag=case)
                t_end = time.perf_counter()
                while True:  # until the writer has drained everything acknowledged
                    st = httpx.get(url + "/v1/stats", auth=(key, ""), timeout=10).json()
                    if st["keys"][case]["in_spool"] == 0 or time.perf_counter() - t_end > cap:
                        break
                    time.sleep(0.05)
                e2e = secs + (time.perf_counter() - t_end)
                k = st["keys"][case]
                rows.append({"suite": "collect", "case": case, "impl": "custlens serve", "seconds": e2e,
                             "rows": acked, "events_per_s_acked": acked / secs, "events_per_s_stored": acked / e2e,
                             "p50_ms": _pct(lat, 0.5) * 1000, "p99_ms": _pct(lat, 0.99) * 1000,
                             "stored": k["stored"], "threads": th})
        finally:
            _stop(proc)
        ws = custlens.open(root)
        try:
            for r in rows:
                n = ws.duck.execute("SELECT count(*) FROM events WHERE _source = ?", ["collect:" + r["case"]]).fetchone()[0]
                r["loss"] = r["rows"] - n
                r["note"] = (f"{r['events_per_s_acked']:,.0f} ev/s acked, {r['events_per_s_stored']:,.0f} ev/s stored; "
                             f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms; loss {r['loss']}; "
                             f"{r['threads']} client threads on the same host")
        finally:
            ws.close()
    return rows


if __name__ == "__main__":
    import json

    print(json.dumps(run(sys.argv[1] if len(sys.argv) > 1 else "S"), indent=2, default=str))
